/**
 * The embedded default: PostgreSQL compiled to WebAssembly (PGlite), in a worker thread of this process, with its
 * data in `${DATA_DIR}/pglite` so that it survives restarts. PGlite's socket server serves it to `PgClient` on a
 * loopback port, so that Storage runs the very code it runs against a PostgreSQL server.
 *
 * PGlite runs one query at a time and its socket server accepts one connection: the pool has one connection.
 * Only one process may open the data directory; a lock file next to it (with the holder's pid) refuses a second.
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import type { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Layer } from "effect"
import { Worker } from "node:worker_threads"
import { StartupError } from "../AppConfig.js"

const failure = (what: string) => (error: unknown) =>
  new StartupError({ message: `${what}: ${error instanceof Error ? error.message : String(error)}` })

const isAlive = (pid: number) =>
  Effect.try(() => process.kill(pid, 0)).pipe(
    Effect.as(true),
    // EPERM: it exists, under another user.
    Effect.catchAll((error) => Effect.succeed((error.error as { code?: string }).code === "EPERM"))
  )

/**
 * Holds `path` for the current scope. A lock whose process is gone (or has this process's pid, as a restarted
 * container's process often does) is stale and taken over.
 */
const lockFile = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const take = fs.writeFileString(path, `${process.pid}\n`, { flag: "wx" })
    const holder = fs.readFileString(path).pipe(
      Effect.map((text) => Number(text.trim())),
      Effect.orElseSucceed(() => NaN)
    )
    yield* Effect.acquireRelease(
      take.pipe(
        Effect.catchIf(
          (error) => error._tag === "SystemError" && error.reason === "AlreadyExists",
          () =>
            Effect.gen(function* () {
              const pid = yield* holder
              if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && (yield* isAlive(pid))) {
                return yield* new StartupError({
                  message: `the embedded database is in use by process ${pid} (${path}); stop it, or remove the file if no Nexxi is running`
                })
              }
              yield* fs.remove(path, { force: true })
              yield* take
            })
        ),
        Effect.mapError((error) => (error instanceof StartupError ? error : failure(`cannot lock ${path}`)(error)))
      ),
      () => Effect.ignore(fs.remove(path, { force: true }))
    )
  })

/** What the worker (`PgliteWorker.mjs`) answers. */
type PgliteWorkerMessage = { readonly port: number } | { readonly error: string } | { readonly stopped: true }

/** None of the parent's node flags (a TypeScript loader, a preloaded probe) apply to a thread that runs PGlite. */
const startWorker = (dataDir: string) =>
  new Worker(new URL("./PgliteWorker.mjs", import.meta.url), { workerData: { dataDir }, execArgv: [] })

/** How long PGlite may take to close its data directory cleanly before its thread is stopped. */
const STOP_TIMEOUT = Duration.seconds(10)

/** The next message of the worker, or its failure: an uncaught error, or its end. */
const nextMessage = (worker: Worker) =>
  Effect.async<PgliteWorkerMessage, StartupError>((resume) => {
    const onMessage = (message: PgliteWorkerMessage) => resume(Effect.succeed(message))
    const onError = (error: Error) => resume(Effect.fail(failure("the embedded database failed")(error)))
    const onExit = (code: number) =>
      resume(Effect.fail(new StartupError({ message: `the embedded database stopped (exit code ${code})` })))
    worker.once("message", onMessage).once("error", onError).once("exit", onExit)
    return Effect.sync(() => void worker.off("message", onMessage).off("error", onError).off("exit", onExit))
  })

/**
 * PGlite with its socket server on a free loopback port, in a worker thread (`PgliteWorker.mjs`); both stop when the
 * scope closes.
 */
const servePglite = (dataDir: string) =>
  Effect.gen(function* () {
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() => startWorker(dataDir)),
      (worker) =>
        Effect.sync(() => worker.postMessage("stop")).pipe(
          Effect.zipRight(nextMessage(worker)),
          Effect.timeout(STOP_TIMEOUT),
          Effect.ignore,
          Effect.zipRight(Effect.promise(() => worker.terminate()))
        )
    )
    const started = yield* nextMessage(worker)
    if ("port" in started) return started.port
    return yield* failure(`cannot open the embedded database in ${dataDir}`)(
      "error" in started ? started.error : "it stopped at once"
    )
  })

/**
 * A `PgClient` on an embedded PGlite whose data is in `dataDir` (created when missing), or in memory with
 * `memory://`. Opening a new data directory takes a few seconds (initdb); an existing one, under a second.
 */
export const pgliteClient = (dataDir: string): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, StartupError> =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      if (!dataDir.startsWith("memory://")) {
        const fs = yield* FileSystem.FileSystem
        yield* fs.makeDirectory(dataDir, { recursive: true }).pipe(Effect.mapError(failure(`cannot create ${dataDir}`)))
        yield* lockFile(`${dataDir}.lock`)
        const exists = yield* fs.exists(`${dataDir}/PG_VERSION`).pipe(Effect.orElseSucceed(() => false))
        if (!exists)
          yield* Effect.logInfo(`Storage: creating the embedded database in ${dataDir} (a few seconds, once)`)
      }
      const port = yield* servePglite(dataDir)
      return PgClient.layer({
        host: "127.0.0.1",
        port,
        username: "postgres",
        database: "postgres",
        maxConnections: 1,
        // One connection for the life of the process: never closed for being idle.
        idleTimeout: Duration.zero,
        applicationName: "nexxi"
      }).pipe(Layer.mapError(failure("cannot connect to the embedded database")))
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
