/**
 * Chooses where Storage keeps its data: the PostgreSQL server of `DATABASE_URL`, else an embedded PGlite in
 * `${DATA_DIR}/pglite`. Both run the same code (`Postgres.ts`). (Here rather than in `Storage.ts`, which the
 * backends import: no import cycle.)
 *
 * The database client (`DatabaseLive`) is a layer of its own, shared by everything that keeps data there (Storage,
 * the managed API keys): one pool per process, and the embedded PGlite opened once.
 */
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Layer, Option } from "effect"
import { AppConfig, type DatabaseSettings, StartupError } from "../AppConfig.js"
import { Storage } from "../Storage.js"
import { pgliteClient } from "./Pglite.js"
import { makePostgresStorage, type PostgresStorageOptions } from "./Postgres.js"

/** The storage on whatever `PgClient` is provided: for tests that bring their own database. */
export const storageOn = (options: PostgresStorageOptions) => Layer.scoped(Storage, makePostgresStorage(options))

/** A client on the configured database: DATABASE_URL, else the embedded PGlite in DATA_DIR. */
export const databaseOn = (settings: DatabaseSettings) =>
  Option.match(settings.databaseUrl, {
    onNone: () => pgliteClient(`${settings.dataDir}/pglite`),
    onSome: (url) =>
      PgClient.layer({
        url,
        maxConnections: settings.databasePoolSize,
        connectTimeout: Duration.millis(settings.storageTimeoutMs),
        applicationName: "nexxi"
      }).pipe(
        Layer.mapError(
          (error) =>
            new StartupError({
              message: `cannot connect to PostgreSQL (DATABASE_URL): ${describeCause(error.cause) ?? error.message}`
            })
        )
      )
  })

/** The configured database's client, built once per process however many services use it. */
export const DatabaseLive = Layer.unwrapEffect(Effect.map(AppConfig, databaseOn))

export const StorageLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    storageOn({
      kind: Option.isSome(config.databaseUrl) ? "postgres" : "pglite",
      queueSize: config.storageQueueSize,
      retryMaxDelayMillis: config.storageRetryMaxDelayMs,
      timeoutMillis: config.storageTimeoutMs,
      flushTimeoutMillis: config.storageFlushTimeoutMs
    })
  )
).pipe(Layer.provide(DatabaseLive))

const describeCause = (cause: unknown): string | undefined =>
  cause instanceof Error ? cause.message || (cause as { code?: string }).code : undefined
