/**
 * The managed API keys from the command line (`npm run keys -- <command>`), straight on the database Nexxi uses:
 * DATABASE_URL, else the embedded PGlite in DATA_DIR (read from the environment and `.env`, as the server does).
 *
 *   create --name NAME [--rpm N] [--tpm N] [--concurrency N]   prints the new key's id and the key (shown once)
 *   list                                                       every key: limits, creation, last use, status
 *   revoke ID|PREFIX                                           by its id or the prefix `list` shows
 *
 * The embedded PGlite can be opened by one process at a time: with it, run the CLI while Nexxi is stopped (it says
 * so, and exits 1, when Nexxi holds the database). With PostgreSQL it works at any time, and every replica refuses a
 * revoked key within API_KEY_CACHE_MS.
 */
import { PlatformConfigProvider } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Console, Data, DateTime, Effect, Either, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { parseArgs } from "node:util"
import { databaseSettings, StartupError } from "../AppConfig.js"
import { type ApiKeyInfo, type KeyLimits, KeyNotFound, Keys, KeyStoreError, makeKeys } from "../Keys.js"
import { makeSqlKeyStore } from "./Postgres.js"
import { databaseOn } from "../Storage/Live.js"

export const usage = `Usage: npm run keys -- <command>

  create --name NAME [--rpm N] [--tpm N] [--concurrency N]
      Creates a key and prints its id and the key itself, which is shown this once only.
      --rpm, --tpm, --concurrency: requests per minute, tokens per minute, chat turns at once;
      0 is unlimited; left out, the server's default (RATE_LIMIT_RPM, RATE_LIMIT_TPM, RATE_LIMIT_CONCURRENCY).
  list
      Every key: id, name, prefix, limits, created, last used (updated about once a minute), status.
  revoke ID|PREFIX
      Revokes a key, by its id (key_...) or the prefix that list shows (nx_...).

The database is DATABASE_URL, else the embedded one in DATA_DIR; the embedded one only while Nexxi is stopped.`

export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

export type Command = Data.TaggedEnum<{
  Create: { readonly name: string; readonly limits: KeyLimits }
  List: {}
  Revoke: { readonly ref: string }
  Help: {}
}>
export const Command = Data.taggedEnum<Command>()

const MAX_NAME_LENGTH = 100

const limitOption = (flag: string, value: string | undefined): Either.Either<Option.Option<number>, UsageError> => {
  if (value === undefined) return Either.right(Option.none())
  const n = Number(value)
  return /^\d+$/.test(value.trim()) && Number.isSafeInteger(n) && n <= 2 ** 31 - 1
    ? Either.right(Option.some(n))
    : Either.left(new UsageError({ message: `--${flag} must be 0 (unlimited) or a positive integer, got "${value}"` }))
}

/** The command of the arguments (after `npm run keys --`). */
export const parseCommand = (argv: ReadonlyArray<string>): Either.Either<Command, UsageError> =>
  Either.gen(function* () {
    const parsed = yield* Either.try({
      try: () =>
        parseArgs({
          args: [...argv],
          allowPositionals: true,
          strict: true,
          options: {
            name: { type: "string" },
            rpm: { type: "string" },
            tpm: { type: "string" },
            concurrency: { type: "string" },
            help: { type: "boolean", short: "h" }
          }
        }),
      catch: (error) => new UsageError({ message: error instanceof Error ? error.message : String(error) })
    })
    const [command, ...rest] = parsed.positionals
    const { values } = parsed
    if (values.help === true || command === undefined || command === "help") return Command.Help()
    const unexpected = (what: string) => new UsageError({ message: `${command} takes no ${what}` })
    switch (command) {
      case "create": {
        if (rest.length > 0) return yield* Either.left(unexpected(`argument "${rest[0]}"`))
        const name = values.name?.trim() ?? ""
        if (name.length === 0) return yield* Either.left(new UsageError({ message: "create needs --name NAME" }))
        if (name.length > MAX_NAME_LENGTH) {
          return yield* Either.left(new UsageError({ message: `--name must be at most ${MAX_NAME_LENGTH} characters` }))
        }
        return Command.Create({
          name,
          limits: {
            requestsPerMinute: yield* limitOption("rpm", values.rpm),
            tokensPerMinute: yield* limitOption("tpm", values.tpm),
            concurrency: yield* limitOption("concurrency", values.concurrency)
          }
        })
      }
      case "list":
      case "revoke": {
        const flag = (["name", "rpm", "tpm", "concurrency"] as const).find((option) => values[option] !== undefined)
        if (flag !== undefined) return yield* Either.left(unexpected(`--${flag}`))
        if (command === "list") {
          return rest.length === 0 ? Command.List() : yield* Either.left(unexpected(`argument "${rest[0]}"`))
        }
        if (rest.length !== 1) return yield* Either.left(new UsageError({ message: "revoke needs one ID or PREFIX" }))
        return Command.Revoke({ ref: rest[0]! })
      }
      default:
        return yield* Either.left(new UsageError({ message: `unknown command "${command}"` }))
    }
  })

const shownLimit = (limit: Option.Option<number>) =>
  Option.match(limit, { onNone: () => "default", onSome: (n) => (n === 0 ? "unlimited" : String(n)) })

const shownTime = (time: DateTime.Utc) => DateTime.formatIso(time).replace(/\.\d+Z$/, "Z")

/** Columns padded to their widest cell. */
const table = (rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join("  ")
      .trimEnd()
  )
}

const listing = (keys: ReadonlyArray<ApiKeyInfo>) =>
  keys.length === 0
    ? ["No managed keys yet: npm run keys -- create --name NAME"]
    : table([
        ["ID", "NAME", "PREFIX", "RPM", "TPM", "CONCURRENCY", "CREATED", "LAST USED", "STATUS"],
        ...keys.map((key) => [
          key.id,
          key.name,
          `${key.prefix}…`,
          shownLimit(key.limits.requestsPerMinute),
          shownLimit(key.limits.tokensPerMinute),
          shownLimit(key.limits.concurrency),
          shownTime(key.createdAt),
          Option.match(key.lastUsedAt, { onNone: () => "never", onSome: shownTime }),
          Option.match(key.revokedAt, { onNone: () => "active", onSome: (at) => `revoked ${shownTime(at)}` })
        ])
      ])

/** Runs a command; the lines it prints. */
export const runCommand = (command: Command): Effect.Effect<ReadonlyArray<string>, KeyNotFound | KeyStoreError, Keys> =>
  Effect.flatMap(Keys, (keys) =>
    Command.$match(command, {
      Help: () => Effect.succeed([usage]),
      Create: ({ name, limits }) =>
        Effect.map(keys.create({ name, limits }), ({ info, key }) => [
          `Created API key "${info.name}"`,
          `  id:  ${info.id}`,
          `  key: ${Redacted.value(key)}`,
          "The key is shown this once only: store it now. Clients send it in the X-API-Key header."
        ]),
      List: () => Effect.map(keys.list, listing),
      Revoke: ({ ref }) =>
        Effect.gen(function* () {
          const before = yield* keys.revoke(ref)
          const at = Option.match(before.revokedAt, { onNone: () => "", onSome: shownTime })
          return [
            `Revoked ${before.id} ("${before.name}", ${before.prefix}…) at ${at}.`,
            "Running replicas refuse it within API_KEY_CACHE_MS (at most 5 s)."
          ]
        })
    })
  )

/** The key service on the configured database, without a cache: each command sees the database as it is. */
const KeysCliLive = Layer.scoped(
  Keys,
  Effect.gen(function* () {
    const settings = yield* databaseSettings
    const store = yield* makeSqlKeyStore({ timeoutMillis: settings.storageTimeoutMs })
    return yield* makeKeys(store, { cacheMillis: 0, lastUsedFlushMillis: 60_000 })
  })
).pipe(Layer.provide(Layer.unwrapEffect(Effect.map(databaseSettings, databaseOn))))

const EMBEDDED_HINT =
  "With the embedded database (no DATABASE_URL) the keys CLI can only run while Nexxi is stopped; " +
  "with DATABASE_URL it runs at any time."

const describeFailure = (error: unknown): string => {
  if (error instanceof UsageError) return `${error.message}\n\n${usage}`
  if (error instanceof StartupError) {
    return error.message.includes("in use by process") ? `${error.message}\n${EMBEDDED_HINT}` : error.message
  }
  if (error instanceof KeyNotFound || error instanceof KeyStoreError) return error.message
  return error instanceof Error ? error.message : String(error)
}

/** The whole CLI run: arguments from `process.argv`, output on stdout, problems on stderr and in the exit code. */
export const main = Effect.gen(function* () {
  const command = yield* parseCommand(process.argv.slice(2))
  const lines = yield* Command.$is("Help")(command)
    ? Effect.succeed([usage])
    : Effect.provide(runCommand(command), KeysCliLive)
  yield* Console.log(lines.join("\n"))
}).pipe(
  Effect.catchAll((error) =>
    Effect.zipRight(
      Console.error(`nexxi keys: ${describeFailure(error)}`),
      Effect.sync(() => void (process.exitCode = error instanceof UsageError ? 2 : 1))
    )
  ),
  Effect.provide(PlatformConfigProvider.layerDotEnvAdd(".env").pipe(Layer.provide(NodeContext.layer))),
  // Log lines (e.g. "creating the embedded database") go to stderr, apart from the command's output.
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))),
  Logger.withMinimumLogLevel(LogLevel.Info)
)
