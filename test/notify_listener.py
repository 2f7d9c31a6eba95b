# A stand-in for systemd's notify socket (sd_notify(3)): binds an AF_UNIX datagram socket at
# argv[1] (a path, or @name for the abstract namespace), prints "listening", then one line per
# datagram received, as JSON, until killed.
import json
import socket
import sys

name = sys.argv[1]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("\0" + name[1:] if name.startswith("@") else name)
print("listening", flush=True)
while True:
    print(json.dumps(sock.recv(4096).decode()), flush=True)
