/**
 * The embedded PGlite and its socket server, in a worker thread of their own: PostgreSQL compiled to WebAssembly
 * takes about a millisecond of CPU per write, which on Nexxi's event loop would delay every request behind it.
 *
 * Plain JavaScript: a worker thread does not inherit the TypeScript loader of `npm start` or the tests.
 * Started by `Pglite.ts` with the data directory; it answers `{ port }` once it listens (or `{ error }`), and on
 * `"stop"` closes the server and the database, answers `{ stopped: true }` and ends.
 */
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { parentPort, workerData } from "node:worker_threads"

const parent = parentPort
const { dataDir } = workerData

try {
  const db = await PGlite.create({ dataDir })
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 1 })
  await server.start()
  parent.on("message", (message) => {
    if (message !== "stop") return
    void server
      .stop()
      .then(() => db.close())
      .catch(() => undefined)
      .then(() => {
        parent.postMessage({ stopped: true })
        parent.close()
      })
  })
  // "127.0.0.1:<port>", once listening.
  parent.postMessage({ port: Number(server.getServerConn().split(":").at(-1)) })
} catch (error) {
  parent.postMessage({ error: error instanceof Error ? error.message : String(error) })
}
