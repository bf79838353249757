/**
 * The embedded PGlite and its socket server, in a worker thread of their own: PostgreSQL compiled to WebAssembly
 * takes about a millisecond of CPU per write, which on Nexxi's event loop would delay every request behind it.
 *
 * Started by `Pglite.ts` with the data directory; it answers `{ port }` once it listens (or `{ error }`), and on
 * `"stop"` closes the server and the database, answers `{ stopped: true }` and ends.
 */
import { PGlite } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { parentPort, workerData } from "node:worker_threads"

export type PgliteWorkerMessage = { readonly port: number } | { readonly error: string } | { readonly stopped: true }

const parent = parentPort!
const send = (message: PgliteWorkerMessage) => parent.postMessage(message)
const describe = (error: unknown) => (error instanceof Error ? error.message : String(error))

const { dataDir } = workerData as { readonly dataDir: string }

try {
  const db = await PGlite.create({ dataDir })
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 1 })
  await server.start()
  parent.on("message", (message: unknown) => {
    if (message !== "stop") return
    void server
      .stop()
      .then(() => db.close())
      .catch(() => undefined)
      .then(() => {
        send({ stopped: true })
        parent.close()
      })
  })
  // "127.0.0.1:<port>", once listening.
  send({ port: Number(server.getServerConn().split(":").at(-1)) })
} catch (error) {
  send({ error: describe(error) })
}
