/**
 * The operating system beyond what Bun offers: systemd socket activation (sd_listen_fds(3)),
 * readiness notification (sd_notify(3)), the users and groups of --user/--group, and the
 * socketpairs a --preload helper forks its workers onto (passed with SCM_RIGHTS).
 *
 * Bun has no AF_UNIX datagram socket, no getsockname on a listener made from an fd and no
 * getpwnam, so these go to libc through bun:ffi (bun-notes.md). libc is opened on first use:
 * a server started without systemd or --user never loads it.
 *
 * Sections:
 *   1. libc through bun:ffi
 *   2. Socket activation: LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES
 *   3. sd_notify: READY, RELOADING, STOPPING, WATCHDOG
 *   4. Users and groups
 *   5. Socketpairs passed to another process (SCM_RIGHTS)
 */

import { CString, FFIType, dlopen, ptr, read } from "bun:ffi";

// ==== 1. libc through bun:ffi ====

const AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10;
const SOCK_DGRAM = 2, SOCK_CLOEXEC = 0o2000000;
const F_GETFD = 1, F_SETFD = 2, FD_CLOEXEC = 1;
const MSG_NOSIGNAL = 0x4000;
const CLOCK_MONOTONIC = 1;
/** sizeof(struct sockaddr_un) on Linux: sa_family_t (2 bytes) + sun_path[108]. */
const SOCKADDR_UN_BYTES = 110;

function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    getpwnam: { args: [FFIType.cstring], returns: FFIType.ptr },
    getpwuid: { args: [FFIType.u32], returns: FFIType.ptr },
    getgrnam: { args: [FFIType.cstring], returns: FFIType.ptr },
    getgrgid: { args: [FFIType.u32], returns: FFIType.ptr },
    socketpair: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    sendmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  }).symbols;
}
let libcSymbols: ReturnType<typeof openLibc> | null = null;
const libc = () => (libcSymbols ??= openLibc());

const cstring = (s: string) => Buffer.from(s + "\0");

/** CLOCK_MONOTONIC in microseconds: what systemd compares MONOTONIC_USEC with (sd_notify(3), RELOADING=1). */
export function monotonicMicros(): bigint {
  const ts = new BigInt64Array(2);
  libc().clock_gettime(CLOCK_MONOTONIC, ptr(ts));
  return ts[0] * 1_000_000n + ts[1] / 1000n;
}

// ==== 2. Socket activation ====
// sd_listen_fds(3): the passed sockets are fds 3 .. 3+LISTEN_FDS-1, meant for the process
// whose pid is LISTEN_PID; LISTEN_FDNAMES names them, colon-separated. Like sd_listen_fds
// with unset_environment (and gunicorn's systemd.listen_fds(unset_environment=True)), the
// variables are removed, so no child takes the sockets for its own.

const SD_LISTEN_FDS_START = 3;

export interface InheritedSocket {
  fd: number;
  /** From LISTEN_FDNAMES ("unknown" when unnamed, as systemd says). */
  name: string;
  /** As --bind would spell it: `127.0.0.1:8000`, `[::1]:8000`, `unix:/run/app.sock`. */
  address: string;
  isUnix: boolean;
}

/** The sockets systemd passed to this process (none when LISTEN_PID is not ours); throws on a malformed LISTEN_FDS. */
export function takeListenFds(env: Record<string, string | undefined>, pid = process.pid): InheritedSocket[] {
  const { LISTEN_PID: forPid, LISTEN_FDS: count, LISTEN_FDNAMES: names } = env;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (forPid === undefined || count === undefined || forPid !== String(pid)) return [];
  if (!/^[0-9]{1,4}$/.test(count)) throw new Error(`LISTEN_FDS: expected a number of sockets, got '${count}'`);
  const nameList = names?.split(":") ?? [];
  const sockets: InheritedSocket[] = [];
  for (let i = 0; i < Number(count); i++) {
    const fd = SD_LISTEN_FDS_START + i;
    // Not for our children: Bun.spawn closes what it is not given today, but the rule is the fd's own.
    const flags = libc().fcntl(fd, F_GETFD, 0);
    if (flags < 0) throw new Error(`LISTEN_FDS=${count}, but fd ${fd} is not open`);
    libc().fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    const { address, isUnix } = describeSocket(fd);
    sockets.push({ fd, name: nameList[i] || "unknown", address, isUnix });
  }
  return sockets;
}

/** getsockname(2), spelled as --bind spells addresses. */
function describeSocket(fd: number): { address: string; isUnix: boolean } {
  const addr = Buffer.alloc(128);
  const len = new Uint32Array([addr.length]);
  if (libc().getsockname(fd, ptr(addr), ptr(len)) !== 0) throw new Error(`fd ${fd} is not a socket`);
  const family = addr.readUInt16LE(0);
  if (family === AF_INET) return { address: `${addr[4]}.${addr[5]}.${addr[6]}.${addr[7]}:${addr.readUInt16BE(2)}`, isUnix: false };
  if (family === AF_INET6) {
    const groups = Array.from({ length: 8 }, (_, i) => addr.readUInt16BE(8 + 2 * i).toString(16));
    return { address: `[${compressIPv6(groups)}]:${addr.readUInt16BE(2)}`, isUnix: false };
  }
  if (family === AF_UNIX) {
    const path = addr.subarray(2, len[0]);
    const isAbstract = path.length > 0 && path[0] === 0;
    const text = isAbstract ? "@" + path.subarray(1).toString("utf8") : path.subarray(0, Math.max(0, path.indexOf(0) === -1 ? path.length : path.indexOf(0))).toString("utf8");
    return { address: `unix:${text}`, isUnix: true };
  }
  throw new Error(`fd ${fd}: socket family ${family} is neither IPv4, IPv6 nor unix`);
}

function compressIPv6(groups: string[]): string {
  const text = groups.join(":");
  const runs = [...text.matchAll(/(?:^|:)0(?::0)+(?::|$)/g)].sort((a, b) => b[0].length - a[0].length);
  if (runs.length === 0) return text;
  const best = runs[0];
  return text.slice(0, best.index) + "::" + text.slice(best.index! + best[0].length);
}

// ==== 3. sd_notify ====
// sd_notify(3): one datagram per state change to the AF_UNIX socket named by NOTIFY_SOCKET,
// a path or, with a leading '@', a name in the abstract namespace. The variables are
// removed, so a worker cannot speak for the service (systemd's NotifyAccess=main agrees).

export class Notifier {
  private fd = -1;
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private readonly sockaddr: Buffer;
  private readonly sockaddrBytes: number;

  constructor(readonly socketName: string, private readonly watchdogUsec: number) {
    const isAbstract = socketName.startsWith("@");
    const name = Buffer.from(isAbstract ? socketName.slice(1) : socketName, "utf8");
    if (name.length > SOCKADDR_UN_BYTES - 3) throw new Error(`NOTIFY_SOCKET: path longer than ${SOCKADDR_UN_BYTES - 3} bytes`);
    this.sockaddr = Buffer.alloc(SOCKADDR_UN_BYTES);
    this.sockaddr.writeUInt16LE(AF_UNIX, 0);
    // Abstract: a leading NUL, and the length says where the name ends (no trailing NUL).
    name.copy(this.sockaddr, isAbstract ? 3 : 2);
    this.sockaddrBytes = 2 + (isAbstract ? 1 + name.length : name.length + 1);
  }

  /** Send one state (lines `KEY=VALUE`); false when the datagram could not be sent (systemd gone): never fatal. */
  send(state: string): boolean {
    if (this.fd < 0) this.fd = libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (this.fd < 0) return false;
    const bytes = Buffer.from(state, "utf8");
    return Number(libc().sendto(this.fd, ptr(bytes), bytes.length, MSG_NOSIGNAL, ptr(this.sockaddr), this.sockaddrBytes)) === bytes.length;
  }

  /** WATCHDOG=1 at half the interval systemd asked for (sd_watchdog_enabled(3) advises this). */
  startWatchdog(): void {
    if (this.watchdogUsec <= 0 || this.watchdog !== null) return;
    this.send("WATCHDOG=1");
    this.watchdog = setInterval(() => this.send("WATCHDOG=1"), Math.max(1, Math.floor(this.watchdogUsec / 2000)));
    this.watchdog.unref?.();
  }

  stopWatchdog(): void {
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.watchdog = null;
  }
}

/** A Notifier when NOTIFY_SOCKET is set, else null; WATCHDOG_USEC counts only when WATCHDOG_PID is unset or ours. */
export function takeNotifySocket(env: Record<string, string | undefined>, pid = process.pid): Notifier | null {
  const { NOTIFY_SOCKET: socketName, WATCHDOG_USEC: usec, WATCHDOG_PID: watchdogPid } = env;
  delete env.NOTIFY_SOCKET;
  delete env.WATCHDOG_USEC;
  delete env.WATCHDOG_PID;
  if (socketName === undefined || socketName === "") return null;
  if (!socketName.startsWith("/") && !socketName.startsWith("@")) throw new Error(`NOTIFY_SOCKET: expected a path or @name, got '${socketName}'`);
  const isOurWatchdog = usec !== undefined && /^[0-9]{1,15}$/.test(usec) && (watchdogPid === undefined || watchdogPid === String(pid));
  return new Notifier(socketName, isOurWatchdog ? Number(usec) : 0);
}

// ==== 4. Users and groups ====
// getpwnam(3)/getgrnam(3) through NSS, so LDAP or systemd's DynamicUser names resolve
// as they do for every other program. Offsets are glibc's x86-64/aarch64 struct layouts:
// struct passwd { char *pw_name; char *pw_passwd; uid_t pw_uid; gid_t pw_gid; ... },
// struct group { char *gr_name; char *gr_passwd; gid_t gr_gid; ... }.

export interface UserEntry { name: string; uid: number; gid: number }

/** A user by name or number (gunicorn's --user takes both); null when there is none. */
export function lookUpUser(nameOrId: string): UserEntry | null {
  const p = /^[0-9]+$/.test(nameOrId) ? libc().getpwuid(Number(nameOrId)) : libc().getpwnam(cstring(nameOrId));
  if (p === null || p === 0) return null;
  const name = new CString(read.ptr(p, 0) as any).toString();
  return { name, uid: read.u32(p, 16), gid: read.u32(p, 20) };
}

/** A group by name or number; null when there is none. */
export function lookUpGroup(nameOrId: string): number | null {
  const isNumber = /^[0-9]+$/.test(nameOrId);
  const p = isNumber ? libc().getgrgid(Number(nameOrId)) : libc().getgrnam(cstring(nameOrId));
  if (p === null || p === 0) return isNumber ? Number(nameOrId) : null; // a bare gid need not be in /etc/group
  return read.u32(p, 16);
}

// ==== 5. Socketpairs passed to another process (SCM_RIGHTS) ====

const SOCK_STREAM = 1, SOL_SOCKET = 1, SCM_RIGHTS = 1;

/** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): two connected fds, neither with a name. */
export function makeSocketPair(): [number, number] {
  const sv = new Int32Array(2);
  if (libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ptr(sv)) !== 0) throw new Error("socketpair() failed");
  return [sv[0], sv[1]];
}

export function closeFd(fd: number): void {
  libc().close(fd);
}

/**
 * sendmsg() of one byte with the fds as SCM_RIGHTS (unix(7)); struct msghdr and cmsghdr as
 * laid out on 64-bit Linux (x86-64 and aarch64 alike). The fds stay open here: close them after.
 */
export function sendFds(socketFd: number, fds: number[]): void {
  const data = new Uint8Array([0x46]);
  const iov = new BigUint64Array([BigInt(ptr(data)), 1n]);
  const cmsgLength = 16 + 4 * fds.length; // CMSG_LEN: cmsg_len (8), cmsg_level (4), cmsg_type (4), the fds
  const control = new Uint8Array((cmsgLength + 7) & ~7); // CMSG_SPACE
  const cmsg = new DataView(control.buffer);
  cmsg.setBigUint64(0, BigInt(cmsgLength), true);
  cmsg.setInt32(8, SOL_SOCKET, true);
  cmsg.setInt32(12, SCM_RIGHTS, true);
  fds.forEach((fd, i) => cmsg.setInt32(16 + 4 * i, fd, true));
  const msg = new Uint8Array(56);
  const header = new DataView(msg.buffer);
  header.setBigUint64(16, BigInt(ptr(iov)), true); // msg_iov
  header.setBigUint64(24, 1n, true); // msg_iovlen
  header.setBigUint64(32, BigInt(ptr(control)), true); // msg_control
  header.setBigUint64(40, BigInt(control.length), true); // msg_controllen
  if (Number(libc().sendmsg(socketFd, ptr(msg), MSG_NOSIGNAL)) !== 1) throw new Error("sendmsg() of the worker's socketpairs failed");
}
