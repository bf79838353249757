/**
 * Managed API keys: what is stored (never the key), how long a replica trusts what it read (revocation within
 * API_KEY_CACHE_MS, on TestClock), last-used times written in batches, the database being unreachable, the SQL store
 * on both databases (the embedded PGlite, and PostgreSQL with DATABASE_URL), and the command line.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { DateTime, Effect, Either, Exit, Layer, Option, Redacted, TestClock } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import {
  defaultLimits,
  generateKey,
  keyDigest,
  type KeyStore,
  Keys,
  makeKeys,
  makeMemoryKeyStore
} from "../src/Keys.js"
import { Command, parseCommand, runCommand } from "../src/Keys/Cli.js"
import { makeSqlKeyStore } from "../src/Keys/Postgres.js"
import { pgliteClient } from "../src/Storage/Pglite.js"
import { isolatedDatabase } from "./support/postgres.js"
import { serviceUrl } from "./support/services.js"

const databaseUrl = serviceUrl("DATABASE_URL", "the API key store on PostgreSQL")

/** The service on a memory store of the test's own, with the store to look at (or make fail). */
const keysOn = (options: { cacheMillis?: number; lastUsedFlushMillis?: number } = {}) =>
  Effect.gen(function* () {
    const memory = makeMemoryKeyStore()
    let lookups = 0
    let touches = 0
    const store: KeyStore = {
      ...memory.store,
      findByHash: (hash) =>
        Effect.zipRight(
          Effect.sync(() => lookups++),
          memory.store.findByHash(hash)
        ),
      touch: (used) =>
        Effect.zipRight(
          Effect.sync(() => touches++),
          memory.store.touch(used)
        )
    }
    const keys = yield* makeKeys(store, { cacheMillis: 3_000, lastUsedFlushMillis: 60_000, ...options })
    return { keys, memory, lookups: () => lookups, touches: () => touches }
  })

describe("managed keys", () => {
  it.scoped("a key is nx_ and 256 random bits, shown once; only its SHA-256 and prefix are stored", () =>
    Effect.gen(function* () {
      const { keys, memory } = yield* keysOn()
      const created = yield* keys.create({
        name: "ci",
        limits: { ...defaultLimits, requestsPerMinute: Option.some(5) }
      })
      const key = Redacted.value(created.key)
      expect(key).toMatch(/^nx_[A-Za-z0-9_-]{43}$/)
      expect(created.info.id).toMatch(/^key_[0-9a-f]{24}$/)
      expect(created.info.prefix).toBe(key.slice(0, 11))
      const [row] = [...memory.rows.values()]
      expect(row!.keyHash).toBe(keyDigest(key))
      expect(JSON.stringify([...memory.rows.values()])).not.toContain(key.slice(11))
      // What a listing shows: never the key.
      expect(JSON.stringify(yield* keys.list)).not.toContain(key.slice(11))
      expect(String(created.key)).not.toContain(key)
    })
  )

  it.scoped("authenticates its key, and nothing else; a value that cannot be a key costs no lookup", () =>
    Effect.gen(function* () {
      const { keys, lookups } = yield* keysOn({ cacheMillis: 0 })
      const { key, info } = yield* keys.create({ name: "app", limits: defaultLimits })
      expect(Option.map(yield* keys.authenticate(Redacted.value(key)), (found) => found.id)).toEqual(
        Option.some(info.id)
      )
      const before = lookups()
      for (const wrong of ["", "nx_short", "not-a-key-at-all", Redacted.value(key).slice(0, -1) + "!"]) {
        expect(yield* keys.authenticate(wrong)).toEqual(Option.none())
      }
      expect(lookups()).toBe(before)
      // The right shape, but no such key.
      expect(
        yield* keys.authenticate(generateKey({ name: "x", limits: defaultLimits, now: DateTime.unsafeNow() }).key)
      ).toEqual(Option.none())
    })
  )

  it.scoped("a key revoked elsewhere (another replica, the CLI) is refused once this replica's cache expires", () =>
    Effect.gen(function* () {
      const { keys, memory, lookups } = yield* keysOn({ cacheMillis: 3_000 })
      const { key, info } = yield* keys.create({ name: "app", limits: defaultLimits })
      const value = Redacted.value(key)
      expect(Option.isSome(yield* keys.authenticate(value))).toBe(true)
      // Revoked in the store behind this replica's back.
      yield* memory.store.revoke({ idOrPrefix: info.id, keyHash: "" }, yield* DateTime.now)
      yield* TestClock.adjust("2999 millis")
      expect(Option.isSome(yield* keys.authenticate(value))).toBe(true)
      expect(lookups()).toBe(1)
      yield* TestClock.adjust("2 millis")
      expect(yield* keys.authenticate(value)).toEqual(Option.none())
    })
  )

  it.scoped("revoking through this replica takes effect here at once; by id, shown prefix or the key itself", () =>
    Effect.gen(function* () {
      const { keys } = yield* keysOn({ cacheMillis: 3_000 })
      const made = yield* Effect.all([1, 2, 3].map(() => keys.create({ name: "app", limits: defaultLimits })))
      const refs = [made[0]!.info.id, made[1]!.info.prefix, Redacted.value(made[2]!.key)]
      for (const [index, ref] of refs.entries()) {
        const value = Redacted.value(made[index]!.key)
        expect(Option.isSome(yield* keys.authenticate(value))).toBe(true)
        const revoked = yield* keys.revoke(ref)
        expect(revoked.id).toBe(made[index]!.info.id)
        expect(yield* keys.authenticate(value)).toEqual(Option.none())
      }
      // Twice keeps the first time; an unknown reference is an error.
      const first = (yield* keys.revoke(refs[0]!)).revokedAt
      yield* TestClock.adjust("1 hour")
      expect((yield* keys.revoke(refs[0]!)).revokedAt).toEqual(first)
      expect((yield* Effect.flip(keys.revoke("key_nope")))._tag).toBe("KeyNotFound")
    })
  )

  it.scoped("last use is written in batches, not once per request", () =>
    Effect.gen(function* () {
      const { keys, memory, touches } = yield* keysOn({ cacheMillis: 3_000, lastUsedFlushMillis: 60_000 })
      const { key, info } = yield* keys.create({ name: "app", limits: defaultLimits })
      for (let i = 0; i < 50; i++) yield* keys.authenticate(Redacted.value(key))
      expect(memory.rows.get(info.id)!.lastUsedAt).toEqual(Option.none())
      yield* TestClock.adjust("10 seconds")
      yield* keys.authenticate(Redacted.value(key))
      yield* TestClock.adjust("50 seconds")
      expect(touches()).toBe(1)
      expect(Option.map(memory.rows.get(info.id)!.lastUsedAt, DateTime.toEpochMillis)).toEqual(Option.some(10_000))
      // Nothing used since: nothing written.
      yield* TestClock.adjust("1 minute")
      expect(touches()).toBe(1)
    })
  )

  it.scoped("with the database unreachable, keys this replica knows keep working; others get 503", () =>
    Effect.gen(function* () {
      const { keys, memory } = yield* keysOn({ cacheMillis: 1_000 })
      const known = yield* keys.create({ name: "known", limits: defaultLimits })
      const unknown = yield* keys.create({ name: "unknown", limits: defaultLimits })
      yield* keys.authenticate(Redacted.value(known.key))
      memory.setFailing(true)
      yield* TestClock.adjust("1 minute")
      expect(Option.isSome(yield* keys.authenticate(Redacted.value(known.key)))).toBe(true)
      const failure = yield* Effect.flip(keys.authenticate(Redacted.value(unknown.key)))
      expect(failure).toMatchObject({ _tag: "KeysUnavailable", retry_after_seconds: 2 })
      memory.setFailing(false)
      expect(Option.isSome(yield* keys.authenticate(Redacted.value(unknown.key)))).toBe(true)
    })
  )
})

// --- The SQL store on both databases ------------------------------------------------------------------------------

const temporaryDirectory = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "nexxi-keys-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const databases = [
  {
    name: "pglite",
    client: Layer.orDie(Layer.unwrapScoped(Effect.map(temporaryDirectory, (dir) => pgliteClient(join(dir, "pglite")))))
  },
  ...(databaseUrl === undefined
    ? []
    : [
        {
          name: "postgres",
          client: Layer.orDie(
            Layer.unwrapScoped(
              Effect.map(isolatedDatabase(databaseUrl), (url) =>
                PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })
              )
            )
          )
        }
      ])
]

describe.each(databases)("the key store on $name", ({ client }) => {
  const StoreLive = Layer.effect(
    Keys,
    Effect.flatMap(makeSqlKeyStore({ timeoutMillis: 5_000 }), (store) =>
      makeKeys(store, { cacheMillis: 0, lastUsedFlushMillis: 60_000 }).pipe(Effect.scoped)
    )
  ).pipe(Layer.provideMerge(client), Layer.orDie)

  layer(StoreLive, { timeout: "30 seconds" })((it) => {
    it.effect("creates, finds, lists, revokes and records last use; stores only the digest", () =>
      Effect.gen(function* () {
        const keys = yield* Keys
        const sql = yield* SqlClient.SqlClient
        const limits = {
          requestsPerMinute: Option.some(0),
          tokensPerMinute: Option.some(5_000),
          concurrency: Option.none()
        }
        const { key, info } = yield* keys.create({ name: "mobile app", limits })
        const value = Redacted.value(key)
        const found = yield* keys.authenticate(value)
        expect(Option.map(found, ({ id, name, limits }) => ({ id, name, limits }))).toEqual(
          Option.some({ id: info.id, name: "mobile app", limits })
        )
        const [row] = yield* sql`SELECT * FROM api_keys WHERE id = ${info.id}`
        expect(row!.key_hash).toBe(keyDigest(value))
        expect(JSON.stringify(row)).not.toContain(value.slice(11))

        const store = yield* makeSqlKeyStore({ timeoutMillis: 5_000 })
        yield* store.touch(new Map([[info.id, DateTime.unsafeMake(2_000_000_000_000)]]))
        // An older time from a slower replica does not move it back.
        yield* store.touch(new Map([[info.id, DateTime.unsafeMake(1_000_000_000_000)]]))
        const listed = (yield* keys.list).find((key) => key.id === info.id)!
        expect(Option.map(listed.lastUsedAt, DateTime.toEpochMillis)).toEqual(Option.some(2_000_000_000_000))

        const revoked = yield* keys.revoke(info.prefix)
        expect(Option.isSome(revoked.revokedAt)).toBe(true)
        expect(yield* keys.authenticate(value)).toEqual(Option.none())
        expect((yield* Effect.flip(keys.revoke("nx_unknown"))).message).toBe(
          "no API key with the id or prefix nx_unknown"
        )
      })
    )
  })
})

// --- The command line ----------------------------------------------------------------------------------------------

describe("npm run keys", () => {
  it("parses create, list and revoke, and says what is wrong with anything else", () => {
    expect(parseCommand(["create", "--name", "ci", "--rpm", "30", "--tpm", "0"])).toEqual(
      Either.right(
        Command.Create({
          name: "ci",
          limits: { requestsPerMinute: Option.some(30), tokensPerMinute: Option.some(0), concurrency: Option.none() }
        })
      )
    )
    expect(parseCommand(["list"])).toEqual(Either.right(Command.List()))
    expect(parseCommand(["revoke", "nx_AbCdEfGh"])).toEqual(Either.right(Command.Revoke({ ref: "nx_AbCdEfGh" })))
    expect(parseCommand([])).toEqual(Either.right(Command.Help()))
    for (const [argv, message] of [
      [["create"], "create needs --name NAME"],
      [["create", "--name", "x", "--rpm=-1"], '--rpm must be 0 (unlimited) or a positive integer, got "-1"'],
      [["create", "--name", "x", "--tpm", "1.5"], '--tpm must be 0 (unlimited) or a positive integer, got "1.5"'],
      [["create", "--name", "x", "--concurrency", "two"], "--concurrency must be 0 (unlimited) or a positive integer"],
      [["revoke"], "revoke needs one ID or PREFIX"],
      [["list", "--rpm", "3"], "list takes no --rpm"],
      [["rotate"], 'unknown command "rotate"'],
      [["create", "--name", "x", "--color"], "Unknown option '--color'"]
    ] as const) {
      const parsed = parseCommand(argv)
      expect(Either.isLeft(parsed) && parsed.left.message, argv.join(" ")).toContain(message)
    }
  })

  it.scoped("create prints the id and the key once; list shows limits and status; revoke by prefix", () =>
    Effect.gen(function* () {
      const { keys } = yield* keysOn()
      const run = (argv: ReadonlyArray<string>) =>
        Effect.map(Effect.provideService(runCommand(Either.getOrThrow(parseCommand(argv))), Keys, keys), (lines) =>
          lines.join("\n")
        )
      const created = yield* run(["create", "--name", "ci", "--rpm", "30", "--concurrency", "0"])
      const id = /id: +(key_\w+)/.exec(created)![1]!
      const key = /key: +(nx_\S+)/.exec(created)![1]!
      expect(created).toContain("shown this once only")
      const listed = yield* run(["list"])
      expect(listed.split("\n")[0]).toMatch(/^ID +NAME +PREFIX +RPM +TPM +CONCURRENCY +CREATED +LAST USED +STATUS$/)
      expect(listed).toMatch(new RegExp(`${id} +ci +${key.slice(0, 11)}… +30 +default +unlimited .* never +active`))
      expect(listed).not.toContain(key)
      expect(yield* run(["revoke", key.slice(0, 11)])).toContain(`Revoked ${id}`)
      expect(yield* run(["list"])).toMatch(/revoked \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/)
      expect(Exit.isFailure(yield* Effect.exit(run(["revoke", "key_unknown"])))).toBe(true)
    })
  )

  const cli = async (argv: ReadonlyArray<string>, env: Record<string, string>) => {
    const root = new URL("..", import.meta.url).pathname
    try {
      const { stdout, stderr } = await promisify(execFile)(
        process.execPath,
        ["--import", `${root}node_modules/tsx/dist/loader.mjs`, `${root}src/cli/keys.ts`, ...argv],
        { cwd: env.CWD ?? root, env: { PATH: process.env.PATH, ...env } }
      )
      return { code: 0, stdout, stderr }
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string }
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
    }
  }

  it("with the embedded database held by a running Nexxi, fails with a clear message", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nexxi-keys-cli-"))
    try {
      // The lock of a live process, as a running Nexxi holds it: this test's parent.
      writeFileSync(join(dir, "pglite.lock"), `${process.ppid}\n`)
      const { code, stdout, stderr } = await cli(["list"], { DATA_DIR: dir, CWD: dir })
      expect([code, stdout]).toEqual([1, ""])
      expect(stderr).toContain(`nexxi keys: the embedded database is in use by process ${process.ppid}`)
      expect(stderr).toContain("the keys CLI can only run while Nexxi is stopped")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it.scopedLive.skipIf(databaseUrl === undefined)(
    "creates a key in DATABASE_URL's database, Nexxi running or not",
    () =>
      Effect.gen(function* () {
        const url = yield* isolatedDatabase(databaseUrl!)
        const created = yield* Effect.promise(() =>
          cli(["create", "--name", "from the cli", "--tpm", "1000"], { DATABASE_URL: url })
        )
        expect(created.code, created.stderr).toBe(0)
        const key = /key: +(nx_\S+)/.exec(created.stdout)![1]!
        // What a replica on that database then sees.
        const client = yield* Effect.orDie(Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))
        const store = yield* makeSqlKeyStore({ timeoutMillis: 5_000 }).pipe(Effect.provide(client), Effect.orDie)
        const found = yield* store.findByHash(keyDigest(key))
        expect(Option.map(found, ({ name, limits }) => [name, limits.tokensPerMinute])).toEqual(
          Option.some(["from the cli", Option.some(1000)])
        )
      })
  )
})
