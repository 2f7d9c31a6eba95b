// The baseline for bench/ts.ts: the plainest Bun.serve hello world.
// Usage: bun bench/bunserve_hello.ts [PORT]   (0 or nothing: any free port)
const port = Number(process.argv[2] ?? 0);
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch: () => new Response("Hello, World!"),
});
console.error(`[INFO] Listening at: http://127.0.0.1:${server.port}`);
