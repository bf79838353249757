/**
 * Managed API keys in the Storage database (`api_keys`, migration `2_api_keys`): PostgreSQL, or the embedded PGlite.
 * `KeysLive` shares the database client with Storage (`DatabaseLive`), so PGlite is opened once.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Cause, DateTime, Duration, Effect, Layer, Option, Schema } from "effect"
import { AppConfig, StartupError } from "../AppConfig.js"
import {
  type ApiKeyInfo,
  type KeyStore,
  KeyStoreError,
  Keys,
  LAST_USED_FLUSH,
  makeKeys,
  type StoredKey
} from "../Keys.js"
import { DatabaseLive } from "../Storage/Live.js"
import { migrate } from "../Storage/Migrations.js"

const KeyRow = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  prefix: Schema.String,
  key_hash: Schema.String,
  requests_per_minute: Schema.NullOr(Schema.Int),
  tokens_per_minute: Schema.NullOr(Schema.Int),
  concurrency: Schema.NullOr(Schema.Int),
  created_at: Schema.DateTimeUtcFromDate,
  last_used_at: Schema.NullOr(Schema.DateTimeUtcFromDate),
  revoked_at: Schema.NullOr(Schema.DateTimeUtcFromDate)
})
const decodeRows = Schema.decodeUnknown(Schema.Array(KeyRow))

const toStored = (row: typeof KeyRow.Type): StoredKey => ({
  id: row.id,
  name: row.name,
  prefix: row.prefix,
  keyHash: row.key_hash,
  limits: {
    requestsPerMinute: Option.fromNullable(row.requests_per_minute),
    tokensPerMinute: Option.fromNullable(row.tokens_per_minute),
    concurrency: Option.fromNullable(row.concurrency)
  },
  createdAt: row.created_at,
  lastUsedAt: Option.fromNullable(row.last_used_at),
  revokedAt: Option.fromNullable(row.revoked_at)
})

const toInfo = (row: typeof KeyRow.Type): ApiKeyInfo => {
  const { keyHash: _, ...info } = toStored(row)
  return info
}

const describe = (cause: Cause.Cause<unknown>) => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

/** The key store on the provided database, its schema migrated first. Every statement is bounded in time. */
export const makeSqlKeyStore = (options: {
  readonly timeoutMillis: number
}): Effect.Effect<KeyStore, StartupError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* migrate.pipe(
      Effect.catchAllCause((cause) =>
        Effect.fail(new StartupError({ message: `cannot prepare the API key table: ${describe(cause)}` }))
      )
    )
    const timeout = Duration.millis(options.timeoutMillis)

    /** A statement's rows, decoded; any failure (unreachable, timeout) is a KeyStoreError. */
    const rows = (statement: Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
      statement.pipe(
        Effect.flatMap((found) => Effect.orDie(decodeRows(found))),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new Error(`no answer within ${Duration.format(timeout)}`)
        }),
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause) || Cause.isDie(cause)
            ? Effect.failCause(cause as Cause.Cause<never>)
            : Effect.fail(new KeyStoreError({ message: describe(cause) }))
        )
      )

    const toDate = DateTime.toDateUtc

    return {
      findByHash: (keyHash) =>
        rows(sql`SELECT * FROM api_keys WHERE key_hash = ${keyHash}`).pipe(
          Effect.map((found) => Option.map(Option.fromNullable(found[0]), toStored))
        ),
      insert: (key) =>
        rows(sql`
          INSERT INTO api_keys (id, name, prefix, key_hash, requests_per_minute, tokens_per_minute, concurrency,
                                created_at)
          VALUES (${key.id}, ${key.name}, ${key.prefix}, ${key.keyHash},
                  ${Option.getOrNull(key.limits.requestsPerMinute)}, ${Option.getOrNull(key.limits.tokensPerMinute)},
                  ${Option.getOrNull(key.limits.concurrency)}, ${toDate(key.createdAt)})
          RETURNING *`).pipe(Effect.asVoid),
      list: rows(sql`SELECT * FROM api_keys ORDER BY created_at, id`).pipe(Effect.map((found) => found.map(toInfo))),
      revoke: ({ idOrPrefix, keyHash }, at) =>
        rows(sql`
          UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ${toDate(at)})
          WHERE id = ${idOrPrefix} OR prefix = ${idOrPrefix} OR key_hash = ${keyHash}
          RETURNING *`).pipe(Effect.map((found) => Option.map(Option.fromNullable(found[0]), toInfo))),
      touch: (lastUsed) =>
        Effect.forEach(
          lastUsed,
          ([id, at]) =>
            // GREATEST ignores NULL: the first use sets it; a replica's older time never moves it back.
            rows(sql`
              UPDATE api_keys SET last_used_at = GREATEST(last_used_at, ${toDate(at)})
              WHERE id = ${id} RETURNING *`),
          { discard: true }
        )
    } satisfies KeyStore
  })

/** The managed keys of the configured database, as the server uses them. */
export const KeysLive = Layer.scoped(
  Keys,
  Effect.gen(function* () {
    const config = yield* AppConfig
    const store = yield* makeSqlKeyStore({ timeoutMillis: config.storageTimeoutMs })
    return yield* makeKeys(store, {
      cacheMillis: config.apiKeyCacheMs,
      lastUsedFlushMillis: Duration.toMillis(LAST_USED_FLUSH)
    })
  })
).pipe(Layer.provide(DatabaseLive))
