// Hocuspocus peer for the benchmark: the stock server, no extensions (no persistence, no auth hook).
// Usage: node servers/hocuspocus.mjs PORT
import { Server } from "@hocuspocus/server";

const port = Number.parseInt(process.argv[2] ?? "0", 10);
const server = new Server({
  port,
  address: "127.0.0.1",
  quiet: true,
  // The bench's idle clients (s5) send nothing; keep them past the default 60 s inactivity check.
  timeout: 3_600_000,
});
await server.listen();
console.log(`READY ${server.address.port}`);
