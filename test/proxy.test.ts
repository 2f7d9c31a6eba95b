// Address grammar, trusted-proxy headers and the PROXY protocol parser, as data (style guide (c)).
// Every PROXY case is fed whole, byte by byte, split at every offset, and followed by HTTP
// bytes that must stay after `consumed`; the same result is expected every time. Each table
// has more invalid cases than valid ones.

import { describe, expect, test } from "bun:test";
import { AddressList, formatIp, parseIp, parseIPv4, parseIPv6, parseProxyHeader, readForwarded, type ProxyHeader, type ProxyMode, HttpError } from "../server.ts";

// ---------------------------------------------------------------------------
// Addresses (RFC 3986 §3.2.2, RFC 4291 §2.2, RFC 5952 §4)
// ---------------------------------------------------------------------------

/** text → canonical form, or null for not an address. */
const ADDRESSES: [string, string | null][] = [
  ["127.0.0.1", "127.0.0.1"],
  ["0.0.0.0", "0.0.0.0"],
  ["255.255.255.255", "255.255.255.255"],
  ["::1", "::1"],
  ["::", "::"],
  ["2001:DB8::1", "2001:db8::1"],
  ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // RFC 5952 §4.2.3: the first of two equal runs
  ["1:0:0:2:0:0:0:3", "1:0:0:2::3"], // §4.2.3: the longest run
  ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
  ["1::", "1::"],
  ["::ffff:10.1.2.3", "10.1.2.3"], // IPv4-mapped is taken as IPv4
  ["::1.2.3.4", "::102:304"],
  ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"],
  ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"], // §4.2.2: one zero group is not "::"
  // invalid
  ["", null],
  ["1.2.3", null],
  ["1.2.3.4.5", null],
  ["256.1.1.1", null],
  ["01.2.3.4", null], // no leading zeros (dec-octet)
  ["1.2.3.-4", null],
  ["1.2.3.4 ", null],
  [" 1.2.3.4", null],
  ["1.2.3.", null],
  ["a.b.c.d", null],
  ["１.2.3.4", null], // a fullwidth digit
  [":::", null],
  ["1::2::3", null],
  ["12345::1", null],
  ["1:2:3:4:5:6:7:8:9", null],
  ["1:2:3:4:5:6:7", null],
  ["1:2:3:4:5:6:7::8", null], // "::" with 8 groups written
  ["1.2.3.4::", null], // a dotted quad only at the end
  ["::1.2.3.4:1", null],
  ["g::1", null],
  [":1::2", null],
  ["1::2:", null],
  ["fe80::1%eth0", null], // zone ids are not addresses
  ["[::1]", null],
  ["::256.1.1.1", null],
  ["1:2:3:4:5:6:7:1.2.3.4", null],
];

describe("IP addresses", () => {
  for (const [text, canonical] of ADDRESSES) {
    test(`${JSON.stringify(text)} → ${canonical ?? "not an address"}`, () => {
      const ip = parseIp(text);
      expect(ip === null ? null : formatIp(ip)).toBe(canonical);
      if (canonical !== null) expect(formatIp(parseIp(canonical)!)).toBe(canonical); // canonical forms are fixed points
    });
  }
  test("more invalid cases than valid", () => {
    expect(ADDRESSES.filter(([, c]) => c === null).length).toBeGreaterThan(ADDRESSES.filter(([, c]) => c !== null).length);
  });
  test("parseIPv4 and parseIPv6 keep to their families", () => {
    expect(parseIPv4("::1")).toBeNull();
    expect(parseIPv6("1.2.3.4")).toBeNull();
  });
});

/** list, address, trusted? — or list, Error text for a list that does not parse. */
const LISTS: [string, string, boolean | string][] = [
  ["127.0.0.1,::1", "127.0.0.1", true],
  ["127.0.0.1,::1", "::1", true],
  ["127.0.0.1,::1", "::ffff:127.0.0.1", true], // a dual-stack listener's IPv4 peer
  ["127.0.0.1,::1", "127.0.0.2", false],
  ["10.0.0.0/8", "10.255.1.2", true],
  ["10.0.0.0/8", "11.0.0.1", false],
  ["10.1.2.3/8", "10.9.9.9", true], // host bits are ignored
  ["192.168.1.0/25", "192.168.1.127", true],
  ["192.168.1.0/25", "192.168.1.128", false],
  ["2001:db8::/32", "2001:db8:ffff::1", true],
  ["2001:db8::/32", "2001:db9::1", false],
  ["::ffff:10.0.0.0/104", "10.2.3.4", true],
  ["0.0.0.0/0", "8.8.8.8", true],
  ["0.0.0.0/0", "::1", false], // families never match each other
  ["*", "8.8.8.8", true],
  ["*", "not an address", true],
  ["", "127.0.0.1", false],
  [" 127.0.0.1 , 10.0.0.1 ", "10.0.0.1", true],
  ["127.0.0.1", "garbage", false],
  // invalid lists
  ["localhost", "", "'localhost' is not an IP address or network"],
  ["10.0.0.0/33", "", "'10.0.0.0/33': the prefix length must be 0 to 32"],
  ["::/129", "", "'::/129': the prefix length must be 0 to 128"],
  ["10.0.0.0/", "", "'10.0.0.0/': the prefix length must be 0 to 32"],
  ["10.0.0.0/x", "", "'10.0.0.0/x': the prefix length must be 0 to 32"],
  ["10.0.0.0/-1", "", "'10.0.0.0/-1': the prefix length must be 0 to 32"],
  ["1.2.3.4/8/8", "", "'1.2.3.4/8/8': the prefix length must be 0 to 32"],
  ["127.0.0.1;10.0.0.1", "", "'127.0.0.1;10.0.0.1' is not an IP address or network"],
  ["[::1]", "", "'[::1]' is not an IP address or network"],
  ["**", "", "'**' is not an IP address or network"],
];

describe("AddressList", () => {
  for (const [list, address, want] of LISTS) {
    test(`${JSON.stringify(list)} has ${JSON.stringify(address)}: ${want}`, () => {
      if (typeof want === "string") expect(() => AddressList.parse(list)).toThrow(want);
      else expect(AddressList.parse(list).has(address)).toBe(want);
    });
  }
});

// ---------------------------------------------------------------------------
// X-Forwarded-For, X-Forwarded-Proto, secure_scheme_headers, RFC 7239 Forwarded
// ---------------------------------------------------------------------------

interface ForwardedCase {
  name: string;
  trusted: string;
  headers: [string, string][];
  expect: { addr: string | null; port?: number | null; scheme: "http" | "https" | null } | { status: number };
}

const LOCAL = "127.0.0.1,::1";
const FORWARDED: ForwardedCase[] = [
  { name: "XFF one hop", trusted: LOCAL, headers: [["x-forwarded-for", "203.0.113.7"]], expect: { addr: "203.0.113.7", scheme: null } },
  { name: "XFF: the right-most untrusted hop", trusted: "127.0.0.1,10.0.0.0/8", headers: [["x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2"]], expect: { addr: "203.0.113.7", scheme: null } },
  { name: "XFF: a spoofed left-most entry is not believed", trusted: LOCAL, headers: [["x-forwarded-for", "1.1.1.1, 203.0.113.7"]], expect: { addr: "203.0.113.7", scheme: null } },
  { name: "XFF with *: the left-most", trusted: "*", headers: [["x-forwarded-for", "1.1.1.1, 203.0.113.7"]], expect: { addr: "1.1.1.1", scheme: null } },
  { name: "XFF: all hops trusted: the left-most", trusted: "10.0.0.0/8", headers: [["x-forwarded-for", "10.0.0.1, 10.0.0.2"]], expect: { addr: "10.0.0.1", scheme: null } },
  { name: "XFF repeated fields combine as one list (RFC 9110 §5.3)", trusted: "127.0.0.1,10.0.0.0/8", headers: [["x-forwarded-for", "203.0.113.7"], ["x-forwarded-for", "10.0.0.2"]], expect: { addr: "203.0.113.7", scheme: null } },
  { name: "XFF IPv6, canonicalized", trusted: LOCAL, headers: [["x-forwarded-for", "2001:DB8:0::1"]], expect: { addr: "2001:db8::1", scheme: null } },
  { name: "XFF: empty list elements dropped (RFC 9110 §5.6.1)", trusted: LOCAL, headers: [["x-forwarded-for", ", 203.0.113.7,"]], expect: { addr: "203.0.113.7", scheme: null } },
  { name: "X-Forwarded-Proto https", trusted: LOCAL, headers: [["x-forwarded-proto", "https"]], expect: { addr: null, scheme: "https" } },
  { name: "X-Forwarded-Proto HTTPS (case-insensitive)", trusted: LOCAL, headers: [["x-forwarded-proto", "HTTPS"]], expect: { addr: null, scheme: "https" } },
  { name: "X-Forwarded-Proto http", trusted: LOCAL, headers: [["x-forwarded-proto", "http"]], expect: { addr: null, scheme: "http" } },
  { name: "X-Forwarded-Ssl on (gunicorn's default table)", trusted: LOCAL, headers: [["x-forwarded-ssl", "on"]], expect: { addr: null, scheme: "https" } },
  { name: "X-Forwarded-Protocol ssl", trusted: LOCAL, headers: [["x-forwarded-protocol", "ssl"]], expect: { addr: null, scheme: "https" } },
  { name: "Forwarded for= and proto=", trusted: LOCAL, headers: [["forwarded", "for=203.0.113.7;proto=https"]], expect: { addr: "203.0.113.7", scheme: "https" } },
  { name: "Forwarded quoted IPv6 with port (RFC 7239 §6)", trusted: LOCAL, headers: [["forwarded", 'for="[2001:db8:cafe::17]:4711"']], expect: { addr: "2001:db8:cafe::17", port: 4711, scheme: null } },
  { name: "Forwarded IPv4 with port", trusted: LOCAL, headers: [["forwarded", 'for="192.0.2.60:8080"']], expect: { addr: "192.0.2.60", port: 8080, scheme: null } },
  { name: "Forwarded wins over XFF", trusted: LOCAL, headers: [["x-forwarded-for", "9.9.9.9"], ["forwarded", "for=203.0.113.7"]], expect: { addr: "203.0.113.7", scheme: null } },
  { name: "Forwarded: proto of the chosen element", trusted: "127.0.0.1,10.0.0.0/8", headers: [["forwarded", "for=203.0.113.7;proto=https, for=10.0.0.2;proto=http"]], expect: { addr: "203.0.113.7", scheme: "https" } },
  { name: "Forwarded: case-insensitive parameter names", trusted: LOCAL, headers: [["forwarded", "For=203.0.113.7;PROTO=https"]], expect: { addr: "203.0.113.7", scheme: "https" } },
  { name: "Forwarded: empty elements dropped", trusted: LOCAL, headers: [["forwarded", "for=203.0.113.7, ,"]], expect: { addr: "203.0.113.7", scheme: null } },
  // invalid or unbelievable: nothing, or the walk stops at the last believable hop
  { name: "no headers: nothing", trusted: LOCAL, headers: [["host", "h"]], expect: { addr: null, scheme: null } },
  { name: "XFF garbage", trusted: LOCAL, headers: [["x-forwarded-for", "not-an-ip"]], expect: { addr: null, scheme: null } },
  { name: "XFF with a port (not XFF's grammar)", trusted: LOCAL, headers: [["x-forwarded-for", "203.0.113.7:1234"]], expect: { addr: null, scheme: null } },
  { name: "XFF bracketed IPv6", trusted: LOCAL, headers: [["x-forwarded-for", "[::1]"]], expect: { addr: null, scheme: null } },
  { name: "XFF: a malformed hop ends the walk at the trusted hop after it", trusted: "127.0.0.1,10.0.0.0/8", headers: [["x-forwarded-for", "6.6.6.6, junk, 10.0.0.2"]], expect: { addr: "10.0.0.2", scheme: null } },
  { name: "XFF empty", trusted: LOCAL, headers: [["x-forwarded-for", ""]], expect: { addr: null, scheme: null } },
  { name: "X-Forwarded-Proto other value: http", trusted: LOCAL, headers: [["x-forwarded-proto", "ftp"]], expect: { addr: null, scheme: "http" } },
  { name: "contradictory scheme headers: 400 (gunicorn's InvalidSchemeHeaders)", trusted: LOCAL, headers: [["x-forwarded-proto", "https"], ["x-forwarded-ssl", "off"]], expect: { status: 400 } },
  { name: "Forwarded proto contradicting X-Forwarded-Proto: 400", trusted: LOCAL, headers: [["x-forwarded-proto", "http"], ["forwarded", "for=1.2.3.4;proto=https"]], expect: { status: 400 } },
  { name: "Forwarded: unknown node names no client", trusted: LOCAL, headers: [["forwarded", "for=unknown"]], expect: { addr: null, scheme: null } },
  { name: "Forwarded: obfuscated node names no client", trusted: LOCAL, headers: [["forwarded", "for=_hidden"]], expect: { addr: null, scheme: null } },
  { name: "Forwarded: unquoted IPv6 is not a token", trusted: LOCAL, headers: [["forwarded", "for=[::1]"]], expect: { addr: null, scheme: null } },
  { name: "Forwarded: unclosed quote", trusted: LOCAL, headers: [["forwarded", 'for="203.0.113.7']], expect: { addr: null, scheme: null } },
  { name: "Forwarded: a parameter twice in one element (RFC 7239 §4)", trusted: LOCAL, headers: [["forwarded", "for=1.2.3.4;for=5.6.7.8"]], expect: { addr: null, scheme: null } },
  { name: "Forwarded: no '='", trusted: LOCAL, headers: [["forwarded", "for"]], expect: { addr: null, scheme: null } },
  { name: "Forwarded: empty value", trusted: LOCAL, headers: [["forwarded", "for="]], expect: { addr: null, scheme: null } },
  { name: "Forwarded: junk after the value", trusted: LOCAL, headers: [["forwarded", "for=1.2.3.4 x"]], expect: { addr: null, scheme: null } },
  { name: "Forwarded: bracketed IPv4", trusted: LOCAL, headers: [["forwarded", 'for="[1.2.3.4]"']], expect: { addr: null, scheme: null } },
  { name: "Forwarded: proto of an unusable element is not read", trusted: LOCAL, headers: [["forwarded", "for=unknown;proto=https"]], expect: { addr: null, scheme: null } },
  { name: "Forwarded: a port out of range names the address only", trusted: LOCAL, headers: [["forwarded", 'for="1.2.3.4:70000"']], expect: { addr: "1.2.3.4", port: null, scheme: null } },
  { name: "a header named constructor is no scheme header", trusted: LOCAL, headers: [["constructor", "x"], ["__proto__", "y"]], expect: { addr: null, scheme: null } },
];

describe("readForwarded", () => {
  for (const c of FORWARDED) {
    test(c.name, () => {
      const run = () => readForwarded(c.headers, AddressList.parse(c.trusted));
      if ("status" in c.expect) {
        let err: unknown;
        try { run(); } catch (e) { err = e; }
        expect(err).toBeInstanceOf(HttpError);
        expect((err as HttpError).status).toBe(c.expect.status);
        return;
      }
      const got = run();
      expect(got.addr).toBe(c.expect.addr);
      expect(got.scheme).toBe(c.expect.scheme);
      if (c.expect.port !== undefined) expect(got.port).toBe(c.expect.port);
    });
  }
  test("more invalid cases than valid", () => {
    const firstInvalid = FORWARDED.findIndex((c) => c.name === "no headers: nothing");
    expect(FORWARDED.length - firstInvalid).toBeGreaterThan(firstInvalid);
  });
});

// ---------------------------------------------------------------------------
// PROXY protocol (HAProxy's proxy-protocol.txt)
// ---------------------------------------------------------------------------

const SIG = "\r\n\r\n\0\r\nQUIT\n";
const b = (...xs: number[]) => String.fromCharCode(...xs);
const be16 = (n: number) => b(n >> 8, n & 0xff);
/** A v2 header: version/command byte, family byte, payload (latin-1). */
const v2 = (verCmd: number, fam: number, payload: string, len = payload.length) => SIG + b(verCmd, fam) + be16(len) + payload;
const V4_BLOCK = b(203, 0, 113, 7) + b(10, 0, 0, 1) + be16(51234) + be16(443);
const V6_SRC = b(0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1);
const V6_BLOCK = V6_SRC + b(...new Array(15).fill(0), 1) + be16(4711) + be16(443);
const MAPPED_V6 = b(...new Array(10).fill(0), 0xff, 0xff, 198, 51, 100, 9) + b(...new Array(16).fill(0)) + be16(1) + be16(2);

interface ProxyCase {
  name: string;
  mode: Exclude<ProxyMode, "off">;
  bytes: string;
  /** "done": the source address (null: keep the connection's) and port; else the error reason's text. */
  expect: { source: { addr: string; port: number } | null } | { error: string };
}

const PROXY_CASES: ProxyCase[] = [
  { name: "v1 TCP4 (§2.1)", mode: "v1", bytes: "PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n", expect: { source: { addr: "203.0.113.7", port: 51234 } } },
  { name: "v1 TCP6", mode: "v1", bytes: "PROXY TCP6 2001:db8::1 ::1 4711 443\r\n", expect: { source: { addr: "2001:db8::1", port: 4711 } } },
  { name: "v1 UNKNOWN: keep the connection's addresses", mode: "v1", bytes: "PROXY UNKNOWN\r\n", expect: { source: null } },
  { name: "v1 UNKNOWN with fields (ignored, §2.1)", mode: "auto", bytes: "PROXY UNKNOWN ffff:: ffff:: 1 2\r\n", expect: { source: null } },
  { name: "v1 port 0 and 65535", mode: "v1", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n", expect: { source: { addr: "1.2.3.4", port: 0 } } },
  { name: "v1 in auto", mode: "auto", bytes: "PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n", expect: { source: { addr: "203.0.113.7", port: 51234 } } },
  { name: "v2 PROXY TCP4 (§2.2)", mode: "v2", bytes: v2(0x21, 0x11, V4_BLOCK), expect: { source: { addr: "203.0.113.7", port: 51234 } } },
  { name: "v2 PROXY TCP6", mode: "v2", bytes: v2(0x21, 0x21, V6_BLOCK), expect: { source: { addr: "2001:db8::1", port: 4711 } } },
  { name: "v2 TCP6 with an IPv4-mapped source", mode: "v2", bytes: v2(0x21, 0x21, MAPPED_V6), expect: { source: { addr: "198.51.100.9", port: 1 } } },
  { name: "v2 with TLVs after the addresses (skipped)", mode: "v2", bytes: v2(0x21, 0x11, V4_BLOCK + b(0x01, 0, 8) + "http/1.1"), expect: { source: { addr: "203.0.113.7", port: 51234 } } },
  { name: "v2 LOCAL (health check): keep the connection's", mode: "v2", bytes: v2(0x20, 0x00, ""), expect: { source: null } },
  { name: "v2 LOCAL with an address block (ignored)", mode: "v2", bytes: v2(0x20, 0x11, V4_BLOCK), expect: { source: null } },
  { name: "v2 PROXY UNSPEC: keep the connection's", mode: "v2", bytes: v2(0x21, 0x00, ""), expect: { source: null } },
  { name: "v2 in auto", mode: "auto", bytes: v2(0x21, 0x11, V4_BLOCK), expect: { source: { addr: "203.0.113.7", port: 51234 } } },
  // invalid
  { name: "plain HTTP where a PROXY header is required", mode: "auto", bytes: "GET / HTTP/1.1\r\n", expect: { error: "no PROXY header" } },
  { name: "v1 in mode v2", mode: "v2", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", expect: { error: "no PROXY v2 header" } },
  { name: "v2 in mode v1", mode: "v1", bytes: v2(0x21, 0x11, V4_BLOCK), expect: { error: "no PROXY v1 header" } },
  { name: "lower-case proxy", mode: "v1", bytes: "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", expect: { error: "no PROXY v1 header" } },
  { name: "a TLS ClientHello where a PROXY header is required", mode: "auto", bytes: b(0x16, 0x03, 0x01, 0x02, 0x00), expect: { error: "no PROXY header" } },
  { name: "v1 bare LF", mode: "v1", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", expect: { error: "not printable ASCII" } },
  { name: "v1 CR without LF", mode: "v1", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", expect: { error: "CR without LF" } },
  { name: "v1 longer than 107 bytes", mode: "v1", bytes: "PROXY UNKNOWN " + "x".repeat(100) + "\r\n", expect: { error: "longer than 107" } },
  { name: "v1 UDP4", mode: "v1", bytes: "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", expect: { error: "not TCP4, TCP6 or UNKNOWN" } },
  { name: "v1 two spaces", mode: "v1", bytes: "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", expect: { error: "not five fields" } },
  { name: "v1 a field missing", mode: "v1", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", expect: { error: "not five fields" } },
  { name: "v1 trailing space", mode: "v1", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", expect: { error: "not five fields" } },
  { name: "v1 TCP4 with IPv6 addresses", mode: "v1", bytes: "PROXY TCP4 ::1 ::1 1 2\r\n", expect: { error: "not IPv4" } },
  { name: "v1 TCP6 with IPv4 addresses", mode: "v1", bytes: "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", expect: { error: "not IPv6" } },
  { name: "v1 bad IPv4", mode: "v1", bytes: "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", expect: { error: "not IPv4" } },
  { name: "v1 port with a leading zero", mode: "v1", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", expect: { error: "a port" } },
  { name: "v1 port 65536", mode: "v1", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", expect: { error: "a port" } },
  { name: "v1 port with a sign", mode: "v1", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", expect: { error: "a port" } },
  { name: "v1 non-ASCII byte", mode: "v1", bytes: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xff\r\n", expect: { error: "not printable ASCII" } },
  { name: "v1 NUL byte", mode: "v1", bytes: "PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n", expect: { error: "not printable ASCII" } },
  { name: "v2 version 1", mode: "v2", bytes: v2(0x11, 0x11, V4_BLOCK), expect: { error: "version is not 2" } },
  { name: "v2 version 3", mode: "v2", bytes: v2(0x31, 0x11, V4_BLOCK), expect: { error: "version is not 2" } },
  { name: "v2 command 2", mode: "v2", bytes: v2(0x22, 0x11, V4_BLOCK), expect: { error: "neither LOCAL nor PROXY" } },
  { name: "v2 UDP4", mode: "v2", bytes: v2(0x21, 0x12, V4_BLOCK), expect: { error: "0x12 is not TCP" } },
  { name: "v2 unix stream", mode: "v2", bytes: v2(0x21, 0x31, "x".repeat(216)), expect: { error: "0x31 is not TCP" } },
  { name: "v2 unknown family", mode: "v2", bytes: v2(0x21, 0x41, V4_BLOCK), expect: { error: "0x41 is not TCP" } },
  { name: "v2 TCP4 block too short", mode: "v2", bytes: v2(0x21, 0x11, V4_BLOCK.slice(0, 11)), expect: { error: "shorter than 12" } },
  { name: "v2 TCP6 block too short", mode: "v2", bytes: v2(0x21, 0x21, V4_BLOCK), expect: { error: "shorter than 36" } },
  { name: "v2 length over our bound", mode: "v2", bytes: v2(0x21, 0x11, "", 4097), expect: { error: "at most 4096" } },
  { name: "v2 broken signature", mode: "v2", bytes: "\r\n\r\n\0\r\nQUIX\n" + b(0x21, 0x11, 0, 12) + V4_BLOCK, expect: { error: "no PROXY v2 header" } },
];

/** Bytes that follow the header (the request, or a ClientHello): `consumed` must stop before them. */
const AFTER = "GET / HTTP/1.1\r\n";
const bytesOf = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** Feed as a receiver does: the bytes so far, growing; the first result that is not need-more. */
function feedGrowing(all: Uint8Array, cuts: number[], mode: Exclude<ProxyMode, "off">): ProxyHeader {
  for (const cut of [...cuts, all.length]) {
    const r = parseProxyHeader(all.subarray(0, cut), mode);
    if (r.kind !== "need-more") return r;
  }
  return { kind: "need-more" };
}

function check(c: ProxyCase, r: ProxyHeader, headerLength: number): void {
  if ("error" in c.expect) {
    expect(r.kind).toBe("error");
    if (r.kind === "error") expect(r.reason).toContain(c.expect.error);
    return;
  }
  expect(r.kind).toBe("done");
  if (r.kind !== "done") return;
  expect(r.consumed).toBe(headerLength);
  expect(r.source).toEqual(c.expect.source);
}

describe("parseProxyHeader", () => {
  for (const c of PROXY_CASES) {
    test(c.name, () => {
      const header = bytesOf(c.bytes);
      const all = bytesOf(c.bytes + ("error" in c.expect ? "" : AFTER));
      check(c, feedGrowing(all, [], c.mode), header.length); // whole
      check(c, feedGrowing(all, Array.from({ length: all.length }, (_, i) => i), c.mode), header.length); // byte by byte
      for (let cut = 1; cut < all.length; cut++) check(c, feedGrowing(all, [cut], c.mode), header.length); // split in two
      if (!("error" in c.expect)) {
        // Every proper prefix of a good header is need-more (nothing is decided early).
        for (let n = 0; n < header.length; n++) expect(parseProxyHeader(header.subarray(0, n), c.mode).kind).toBe("need-more");
      }
    });
  }
  test("more invalid cases than valid", () => {
    expect(PROXY_CASES.filter((c) => "error" in c.expect).length).toBeGreaterThan(PROXY_CASES.filter((c) => !("error" in c.expect)).length);
  });
});
