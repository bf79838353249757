/**
 * Storage's contract, one suite run against both databases it supports: PostgreSQL (with DATABASE_URL; a database
 * of this file's own, dropped afterwards) and the embedded PGlite (in a temporary DATA_DIR). Turns go through the
 * real HTTP API; tests keep apart by using API keys (owners) of their own. What only a server can show (an outage,
 * a connection lost at commit, a full write queue) has a block of its own, PostgreSQL only.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import type { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Fiber, Layer, Metric, Option, Redacted, type Scope } from "effect"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { keyIdOf } from "../src/Auth.js"
import type { SessionId } from "../src/Domain/Session.js"
import { Storage, type StorageShape, type TurnRecord } from "../src/Storage.js"
import { StorageLive, storageOn } from "../src/Storage/Live.js"
import { migrate } from "../src/Storage/Migrations.js"
import { pgliteClient } from "../src/Storage/Pglite.js"
import { type PostgresStorageOptions, writeDuration } from "../src/Storage/Postgres.js"
import { writeFailures } from "../src/Storage/WriteQueue.js"
import { loadTokenizer } from "../src/Tokenizer.js"
import { recordingGenerator } from "./support/generators.js"
import { isolatedDatabase, tcpProxy } from "./support/postgres.js"
import { startTestServer } from "./support/server.js"
import { eventually, serviceUrl } from "./support/services.js"
import { sessionId, turn } from "./support/sessions.js"

const databaseUrl = serviceUrl("DATABASE_URL", "the PostgreSQL storage tests")

const json = (response: Response) => Effect.promise(() => response.json() as Promise<any>)
const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)
const tokenizer = loadTokenizer()

const options = (kind: PostgresStorageOptions["kind"]): PostgresStorageOptions => ({
  kind,
  queueSize: 100,
  retryMaxDelayMillis: 200,
  timeoutMillis: 2_000,
  flushTimeoutMillis: 2_000
})

type Client = Layer.Layer<PgClient.PgClient | SqlClient.SqlClient>

/** A client for the current scope, as a layer that does not build it again. */
const clientOn = (url: string, maxConnections = 2): Effect.Effect<Client, never, Scope.Scope> =>
  Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections })).pipe(
    Effect.map((context) => Layer.succeedContext(context)),
    Effect.orDie
  )

const temporaryDirectory = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "nexxi-storage-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

interface Backend {
  readonly name: string
  /** The storage under test, and a client on its database to look at the tables. */
  readonly layer: Layer.Layer<Storage | PgClient.PgClient | SqlClient.SqlClient>
  /**
   * `count` clients for concurrent migration runs: on a new, empty database where the backend allows several
   * connections (replicas starting at once); else on the suite's own database.
   */
  readonly concurrentClients: (
    count: number
  ) => Effect.Effect<ReadonlyArray<Client>, never, Scope.Scope | PgClient.PgClient | SqlClient.SqlClient>
}

const postgres = (adminUrl: string): Backend => ({
  name: "postgres",
  layer: Layer.unwrapScoped(
    Effect.map(isolatedDatabase(adminUrl), (url) =>
      storageOn(options("postgres")).pipe(
        Layer.provideMerge(PgClient.layer({ url: Redacted.make(url), maxConnections: 4 })),
        Layer.orDie
      )
    )
  ),
  concurrentClients: (count) =>
    Effect.flatMap(isolatedDatabase(adminUrl), (url) =>
      Effect.forEach(Array.from({ length: count }), () => clientOn(url, 1))
    )
})

const pglite: Backend = {
  name: "pglite",
  layer: Layer.unwrapScoped(
    Effect.map(temporaryDirectory, (dataDir) =>
      storageOn(options("pglite")).pipe(Layer.provideMerge(pgliteClient(join(dataDir, "pglite"))), Layer.orDie)
    )
  ),
  // One process, one connection: concurrent runs share it (a new PGlite would cost seconds of initdb).
  concurrentClients: (count) =>
    Effect.map(Effect.context<PgClient.PgClient | SqlClient.SqlClient>(), (context) =>
      Array.from({ length: count }, () => Layer.succeedContext(context))
    )
}

const backends: ReadonlyArray<Backend> = [pglite, ...(databaseUrl === undefined ? [] : [postgres(databaseUrl)])]

/** Tables, columns, indexes and applied migrations: what a migration run could change. */
const schemaOf = (sql: PgClient.PgClient) =>
  Effect.all([
    sql`
      SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
      WHERE table_schema = 'public' ORDER BY table_name, column_name`,
    sql`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname`,
    sql`SELECT migration_id, name FROM nexxi_migrations ORDER BY migration_id`
  ])

/** A caller of its own (an API key no other test uses), on a server backed by `storage`. */
const newCaller = (storage: StorageShape, generator = recordingGenerator(["Hel", "lo"], 9)) =>
  Effect.gen(function* () {
    const apiKey = `test-key-${randomUUID()}`
    const server = yield* startTestServer({
      storage: Layer.succeed(Storage, storage),
      apiKey,
      generator: generator.layer
    })
    return { ...server, apiKey, owner: keyIdOf(apiKey) }
  })

type Caller = Effect.Effect.Success<ReturnType<typeof newCaller>>

const chat = (caller: Caller, message: string, sessionId?: string) =>
  Effect.gen(function* () {
    const response = yield* call(() =>
      caller.request("/v1/chat", {
        method: "POST",
        json: sessionId === undefined ? { message } : { message, session_id: sessionId }
      })
    )
    expect(response.status).toBe(200)
    return { ...(yield* json(response)), requestId: response.headers.get("x-request-id") }
  })

const get = (caller: Caller, path: string) =>
  Effect.flatMap(
    call(() => caller.request(path)),
    (response) => Effect.map(json(response), (body) => ({ status: response.status, body }))
  )

const deleteSession = (caller: Caller, id: string) =>
  Effect.map(
    call(() => caller.request("/v1/chat/session", { method: "DELETE", json: { session_id: id } })),
    (response) => response.status
  )

const turnRecord = (owner: string, id: SessionId, n: number): TurnRecord => {
  const { user, assistant } = turn(n)
  return {
    requestId: `request-${n}`,
    owner,
    sessionId: id,
    model: "test-model",
    userMessage: user,
    reply: assistant,
    finishReason: assistant.interrupted ? "interrupted" : "eos",
    promptTokens: 3 * n,
    completionTokens: 2 * n,
    timeToFirstTokenMs: Option.some(12.5),
    durationMs: 40.5,
    safety: { action: "flag", categories: { pii: 0.75 } }
  }
}

describe.each(backends)("$name storage", (backend) => {
  layer(backend.layer, { excludeTestServices: true, timeout: "30 seconds" })((it) => {
    it.effect("has applied the migrations; applying them again changes nothing", () =>
      Effect.gen(function* () {
        const sql = yield* PgClient.PgClient
        const before = yield* schemaOf(sql)
        expect(new Set(before[0].map((column) => column.table_name))).toEqual(
          new Set(["conversations", "messages", "usage", "api_keys", "nexxi_migrations"])
        )
        expect(yield* migrate).toEqual([])
        expect(yield* schemaOf(sql)).toEqual(before)
      })
    )

    it.scoped("concurrent runs all succeed and apply each migration once", () =>
      Effect.gen(function* () {
        const clients = yield* backend.concurrentClients(3)
        const runs = yield* Effect.all(
          clients.map((client) => Effect.provide(migrate, client)),
          { concurrency: "unbounded" }
        )
        // None applied twice, and all applied: by one of these runs on an empty database, before on the suite's own.
        const applied = runs.flat().map(([id]) => id)
        expect(new Set(applied).size).toBe(applied.length)
        const after = yield* Effect.provide(Effect.flatMap(PgClient.PgClient, schemaOf), clients[0]!)
        expect(after).toEqual(yield* schemaOf(yield* PgClient.PgClient))
      })
    )

    it.scoped("keeps a chat turn: the conversation, both messages with their token counts, and its usage", () =>
      Effect.gen(function* () {
        const sql = yield* PgClient.PgClient
        const caller = yield* newCaller(yield* Storage)
        const message = "Hello  there,\n\tstorage! How are you?"
        const first = yield* chat(caller, message)
        const id = first.session_id
        const usage = yield* eventually(
          sql`SELECT * FROM usage WHERE conversation_id = ${id}`,
          (rows) => rows.length === 1
        )
        expect(usage[0]).toMatchObject({
          request_id: first.requestId,
          owner: caller.owner,
          model: "test-model",
          prompt_tokens: 9,
          completion_tokens: 2,
          status: "completed",
          finish_reason: "eos"
        })
        expect(usage[0]!.duration_ms).toBeGreaterThan(0)
        expect(usage[0]!.time_to_first_token_ms).toBeGreaterThan(0)

        const messages = yield* sql`
          SELECT seq, role, content, tokens, interrupted FROM messages WHERE conversation_id = ${id} ORDER BY seq`
        expect(messages).toEqual([
          {
            seq: 1,
            role: "user",
            content: message,
            tokens: yield* tokenizer.messageTokens("user", message),
            interrupted: false
          },
          {
            seq: 2,
            role: "assistant",
            content: "Hello",
            tokens: yield* tokenizer.messageTokens("assistant", "Hello"),
            interrupted: false
          }
        ])
        const [conversation] = yield* sql`SELECT owner, title, deleted_at FROM conversations WHERE id = ${id}`
        expect(conversation).toEqual({
          owner: caller.owner,
          title: "Hello there, storage! How are you?",
          deleted_at: null
        })

        // The next turn of the session follows in the same conversation.
        yield* chat(caller, "And now?", id)
        const transcript = yield* eventually(
          get(caller, `/v1/conversations/${id}`),
          ({ body }) => body.messages?.length === 4
        )
        expect(transcript.status).toBe(200)
        expect(transcript.body.title).toBe("Hello there, storage! How are you?")
        expect(transcript.body.messages.map((m: any) => [m.role, m.content, m.tokens])).toEqual([
          ["user", message, messages[0]!.tokens],
          ["assistant", "Hello", messages[1]!.tokens],
          ["user", "And now?", yield* tokenizer.messageTokens("user", "And now?")],
          ["assistant", "Hello", messages[1]!.tokens]
        ])
        // The conversation moved to its latest reply (compared exactly: two turns may share a millisecond).
        expect(transcript.body.updated_at).toBe(transcript.body.messages[3].created_at)
        expect(transcript.body.updated_at >= transcript.body.created_at).toBe(true)
        expect((yield* sql`SELECT turn_id FROM usage WHERE conversation_id = ${id}`).length).toBe(2)
      })
    )

    it.scoped("keeps what a turn record carries: safety verdict, timings, an interrupted reply", () =>
      Effect.gen(function* () {
        const sql = yield* PgClient.PgClient
        const storage = yield* Storage
        const owner = `owner-${randomUUID()}`
        const id = randomUUID() as SessionId
        yield* storage.recordTurn(turnRecord(owner, id, 2))
        const [usage] = yield* eventually(
          sql`SELECT * FROM usage WHERE conversation_id = ${id}`,
          (rows) => rows.length === 1
        )
        expect(usage).toMatchObject({
          request_id: "request-2",
          prompt_tokens: 6,
          completion_tokens: 4,
          time_to_first_token_ms: 12.5,
          duration_ms: 40.5,
          status: "interrupted",
          finish_reason: "interrupted"
        })
        const messages = yield* sql`
          SELECT role, tokens, safety_action, safety_categories, interrupted, created_at
          FROM messages WHERE conversation_id = ${id} ORDER BY seq`
        expect(messages).toEqual([
          {
            role: "user",
            tokens: 2,
            safety_action: "flag",
            safety_categories: { pii: 0.75 },
            interrupted: false,
            created_at: new Date(2000)
          },
          {
            role: "assistant",
            tokens: 3,
            safety_action: null,
            safety_categories: null,
            interrupted: true,
            created_at: new Date(2500)
          }
        ])
      })
    )

    it.scoped("stores many turns recorded at once, each once and in order, in fewer writes than turns", () =>
      Effect.gen(function* () {
        const sql = yield* PgClient.PgClient
        const storage = yield* Storage
        const owner = `owner-${randomUUID()}`
        const conversations = Array.from({ length: 5 }, () => randomUUID() as SessionId)
        const total = 300
        const writesBefore = (yield* Metric.value(writeDuration)).count
        // Faster than the writer can write them (and more than the queue holds): they wait, then go in batches.
        for (let n = 1; n <= total; n++) {
          yield* storage.recordTurn(turnRecord(owner, conversations[n % conversations.length]!, n))
        }
        yield* eventually(
          sql`SELECT 1 FROM usage WHERE owner = ${owner}`,
          (rows) => rows.length === total,
          "20 seconds"
        )
        const usage = yield* sql<{ readonly request_id: string }>`SELECT request_id FROM usage WHERE owner = ${owner}`
        expect(new Set(usage.map((row) => row.request_id)).size).toBe(total)
        for (const [index, id] of conversations.entries()) {
          const turns = Array.from({ length: total }, (_, i) => i + 1).filter((n) => n % conversations.length === index)
          const messages = yield* sql<{ readonly seq: number; readonly content: string }>`
            SELECT seq, content FROM messages WHERE conversation_id = ${id} ORDER BY seq`
          expect(messages).toEqual(
            turns.flatMap((n, i) => [
              { seq: 2 * i + 1, content: `u${n}` },
              { seq: 2 * i + 2, content: `a${n}` }
            ])
          )
        }
        expect((yield* Metric.value(writeDuration)).count - writesBefore).toBeLessThan(total)
      })
    )

    it.scoped("lists a caller's conversations newest first, in pages that stay put when new ones arrive", () =>
      Effect.gen(function* () {
        const caller = yield* newCaller(yield* Storage)
        for (let n = 1; n <= 5; n++) yield* chat(caller, `conversation ${n}`)
        const all = yield* eventually(
          get(caller, "/v1/conversations?limit=100"),
          ({ body }) => body.conversations.length === 5
        )
        expect(all.body.next_cursor).toBeNull()
        // Newest first: by creation time (to the millisecond), then id.
        const newestFirst = [...all.body.conversations].sort((a: any, b: any) =>
          a.created_at === b.created_at ? (a.id < b.id ? 1 : -1) : a.created_at < b.created_at ? 1 : -1
        )
        expect(all.body.conversations).toEqual(newestFirst)
        expect(all.body.conversations.map((c: any) => c.title).sort()).toEqual(
          [1, 2, 3, 4, 5].map((n) => `conversation ${n}`)
        )

        const first = yield* get(caller, "/v1/conversations?limit=2")
        expect(first.body.conversations).toEqual(all.body.conversations.slice(0, 2))
        for (let n = 6; n <= 7; n++) yield* chat(caller, `conversation ${n}`)
        yield* eventually(get(caller, "/v1/conversations"), ({ body }) => body.conversations.length === 7)

        const second = yield* get(caller, `/v1/conversations?limit=2&cursor=${first.body.next_cursor}`)
        expect(second.body.conversations).toEqual(all.body.conversations.slice(2, 4))
        const third = yield* get(caller, `/v1/conversations?limit=2&cursor=${second.body.next_cursor}`)
        expect(third.body.conversations).toEqual(all.body.conversations.slice(4))
        expect(third.body.next_cursor).toBeNull()
        const fresh = yield* get(caller, "/v1/conversations?limit=2")
        expect(fresh.body.conversations.map((c: any) => c.title).sort()).toEqual(["conversation 6", "conversation 7"])
      })
    )

    it.scoped("gives twenty conversations a page unless asked otherwise", () =>
      Effect.gen(function* () {
        const storage = yield* Storage
        const caller = yield* newCaller(storage)
        for (let n = 1; n <= 21; n++) yield* storage.recordTurn(turnRecord(caller.owner, randomUUID() as SessionId, n))
        yield* eventually(get(caller, "/v1/conversations?limit=100"), ({ body }) => body.conversations.length === 21)
        const page = yield* get(caller, "/v1/conversations")
        expect(page.body.conversations).toHaveLength(20)
        const rest = yield* get(caller, `/v1/conversations?cursor=${page.body.next_cursor}`)
        expect(rest.body).toEqual({ conversations: [expect.objectContaining({ title: "u1" })], next_cursor: null })
      })
    )

    it.scoped("refuses a page size out of range and a cursor it did not give", () =>
      Effect.gen(function* () {
        const caller = yield* newCaller(yield* Storage)
        for (const [query, field] of [
          ["limit=0", "limit"],
          ["limit=101", "limit"],
          ["limit=ten", "limit"],
          ["cursor=bm90IGEgY3Vyc29y", "cursor"]
        ] as const) {
          const { status, body } = yield* get(caller, `/v1/conversations?${query}`)
          expect([query, status, body.error.type, body.error.field]).toEqual([query, 422, "validation_error", field])
        }
      })
    )

    it.scoped("shows a conversation to its owner only; for anyone else it does not exist", () =>
      Effect.gen(function* () {
        const storage = yield* Storage
        const alice = yield* newCaller(storage)
        const bob = yield* newCaller(storage)
        const { session_id: id } = yield* chat(alice, "a secret of mine")
        yield* eventually(get(alice, `/v1/conversations/${id}`), ({ status }) => status === 200)

        expect((yield* get(bob, "/v1/conversations")).body).toEqual({ conversations: [], next_cursor: null })
        const theirs = yield* get(bob, `/v1/conversations/${id}`)
        const unknown = yield* get(bob, `/v1/conversations/${randomUUID()}`)
        expect([theirs.status, theirs.body.error.type]).toEqual([404, "conversation_not_found"])
        expect([unknown.status, unknown.body.error.type]).toEqual([404, "conversation_not_found"])
        expect(theirs.body.error.message).not.toContain("secret")

        expect(yield* deleteSession(bob, id)).toBe(404)
        expect((yield* get(alice, `/v1/conversations/${id}`)).body.messages).toHaveLength(2)
        expect((yield* get(alice, "/v1/conversations")).body.conversations).toHaveLength(1)
      })
    )

    it.scoped("deleting the session deletes the stored messages and title; usage stays", () =>
      Effect.gen(function* () {
        const sql = yield* PgClient.PgClient
        const caller = yield* newCaller(yield* Storage)
        const { session_id: id } = yield* chat(caller, "please forget this")
        yield* chat(caller, "and this", id)
        yield* eventually(sql`SELECT 1 FROM messages WHERE conversation_id = ${id}`, (rows) => rows.length === 4)

        expect(yield* deleteSession(caller, id)).toBe(204)
        expect((yield* get(caller, `/v1/conversations/${id}`)).status).toBe(404)
        expect((yield* get(caller, "/v1/conversations")).body.conversations).toEqual([])
        expect(yield* sql`SELECT * FROM messages WHERE conversation_id = ${id}`).toEqual([])
        const [conversation] = yield* sql`SELECT title, deleted_at FROM conversations WHERE id = ${id}`
        expect(conversation!.title).toBeNull()
        expect(conversation!.deleted_at).toBeInstanceOf(Date)
        expect(yield* sql`SELECT owner FROM usage WHERE conversation_id = ${id}`).toEqual([
          { owner: caller.owner },
          { owner: caller.owner }
        ])
      })
    )

    it.scoped("deletes the stored transcript also when the session store has forgotten the session", () =>
      Effect.gen(function* () {
        const sql = yield* PgClient.PgClient
        const storage = yield* Storage
        const caller = yield* newCaller(storage)
        const { session_id: id } = yield* chat(caller, "remember me a while")
        yield* eventually(get(caller, `/v1/conversations/${id}`), ({ status }) => status === 200)
        // Same key, another session store that never saw the session: as after its TTL.
        const later = yield* startTestServer({ storage: Layer.succeed(Storage, storage), apiKey: caller.apiKey })
        expect((yield* get({ ...caller, ...later }, `/v1/chat/session/${id}`)).status).toBe(404)

        expect(yield* deleteSession({ ...caller, ...later }, id)).toBe(204)
        expect((yield* get(caller, `/v1/conversations/${id}`)).status).toBe(404)
        expect(yield* sql`SELECT * FROM messages WHERE conversation_id = ${id}`).toEqual([])
        expect(yield* deleteSession({ ...caller, ...later }, id)).toBe(404)
      })
    )

    it.scoped("a turn that reaches the database after its conversation was deleted does not bring it back", () =>
      Effect.gen(function* () {
        const sql = yield* PgClient.PgClient
        const storage = yield* Storage
        const owner = `owner-${randomUUID()}`
        const id = randomUUID() as SessionId
        // Deleted before any turn of it was written (they were queued, here or on another replica).
        expect(yield* storage.deleteConversation(owner, id)).toBe(false)
        yield* storage.recordTurn(turnRecord(owner, id, 1))
        yield* eventually(sql`SELECT 1 FROM usage WHERE conversation_id = ${id}`, (rows) => rows.length === 1)
        expect(yield* sql`SELECT * FROM messages WHERE conversation_id = ${id}`).toEqual([])
        expect(yield* storage.conversation(owner, id)).toEqual(Option.none())
        expect((yield* storage.listConversations(owner, { cursor: Option.none(), limit: 10 })).conversations).toEqual(
          []
        )
        // Another owner cannot mark someone else's conversation deleted.
        const other = randomUUID() as SessionId
        yield* storage.recordTurn(turnRecord(owner, other, 3))
        yield* eventually(storage.conversation(owner, other), Option.isSome)
        expect(yield* storage.deleteConversation("someone-else", other)).toBe(false)
        expect(Option.isSome(yield* storage.conversation(owner, other))).toBe(true)
      })
    )

    it.scoped("/ready reports the database", () =>
      Effect.gen(function* () {
        const caller = yield* newCaller(yield* Storage)
        const { body } = yield* get(caller, "/ready")
        expect(body.dependencies.storage).toEqual({
          status: backend.name === "pglite" ? "embedded" : "up",
          kind: backend.name
        })
      })
    )
  })
})

describe("conversation endpoints", () => {
  it.scopedLive("need the X-API-Key, and are documented in OpenAPI", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      for (const path of ["/v1/conversations", `/v1/conversations/${randomUUID()}`]) {
        const response = yield* call(() => fetch(server.url + path))
        expect([path, response.status]).toEqual([path, 401])
      }
      const spec = yield* Effect.flatMap(
        call(() => fetch(server.url + "/openapi.json")),
        json
      )
      expect(spec.paths["/v1/conversations"].get.parameters.map((p: any) => p.name).sort()).toEqual(["cursor", "limit"])
      expect(Object.keys(spec.paths["/v1/conversations/{id}"].get.responses).sort()).toEqual(
        expect.arrayContaining(["200", "401", "404", "422", "503"])
      )
    })
  )
})

describe("embedded PGlite data directory", () => {
  it.scopedLive("is refused while another live process holds it", () =>
    Effect.gen(function* () {
      const dataDir = join(yield* temporaryDirectory, "pglite")
      // The lock of a process that is alive: this test's parent.
      writeFileSync(`${dataDir}.lock`, `${process.ppid}\n`)
      const error = yield* Effect.flip(Layer.build(pgliteClient(dataDir)))
      expect(error.message).toBe(
        `the embedded database is in use by process ${process.ppid} (${dataDir}.lock); stop it, or remove the file ` +
          "if no Nexxi is running"
      )
    })
  )
})

describe.skipIf(databaseUrl === undefined)("PostgreSQL storage through an outage", () => {
  const adminUrl = databaseUrl!

  /** A database of its own, reached through a proxy the test controls; a client that bypasses the proxy. */
  const behindProxy = Effect.gen(function* () {
    const url = yield* isolatedDatabase(adminUrl)
    const target = new URL(url)
    const proxy = yield* tcpProxy(target.hostname, Number(target.port || 5432))
    const viaProxy = new URL(url)
    viaProxy.host = `127.0.0.1:${proxy.port}`
    const direct = yield* clientOn(url)
    return { proxy, url: viaProxy.toString(), sql: yield* Effect.provide(PgClient.PgClient, direct) }
  })

  const fastRetries = { STORAGE_RETRY_MAX_DELAY_MS: "100", STORAGE_TIMEOUT_MS: "1000" }

  it.scopedLive("keeps every turn made while the database was unreachable, once, when it is back", () =>
    Effect.gen(function* () {
      const { proxy, url, sql } = yield* behindProxy
      const server = yield* startTestServer({ storage: StorageLive, env: { DATABASE_URL: url, ...fastRetries } })
      const first = yield* Effect.flatMap(
        call(() => server.request("/v1/chat", { method: "POST", json: { message: "before" } })),
        json
      )
      yield* eventually(sql`SELECT 1 FROM usage`, (rows) => rows.length === 1)

      yield* proxy.close
      const ready = yield* eventually(
        Effect.flatMap(
          call(() => fetch(server.url + "/ready")),
          json
        ),
        (body) => body.dependencies.storage.status === "down"
      )
      expect(ready.status).toBe("not_ready")
      const requestIds: Array<string> = []
      for (const [message, session_id] of [
        ["during 1", first.session_id],
        ["during 2", undefined],
        ["during 3", first.session_id],
        ["during 4", undefined]
      ]) {
        const response = yield* call(() =>
          server.request("/v1/chat", { method: "POST", json: session_id ? { message, session_id } : { message } })
        )
        expect(response.status).toBe(200)
        requestIds.push(response.headers.get("x-request-id")!)
      }
      const listed = yield* call(() => server.request("/v1/conversations"))
      expect(listed.status).toBe(503)
      expect((yield* json(listed)).error.type).toBe("storage_unavailable")

      yield* proxy.open
      yield* eventually(sql`SELECT 1 FROM usage`, (rows) => rows.length === 5)
      yield* eventually(
        Effect.flatMap(
          call(() => fetch(server.url + "/ready")),
          json
        ),
        (body) => body.dependencies.storage.status === "up" && body.dependencies.storage.detail === undefined
      )
      const usage = yield* sql`SELECT request_id FROM usage WHERE request_id IN ${sql.in(requestIds)}`
      expect(usage.map((row) => row.request_id).sort()).toEqual([...requestIds].sort())
      const messages = yield* sql`
        SELECT content, seq FROM messages WHERE conversation_id = ${first.session_id} ORDER BY seq`
      expect(messages.map((row) => row.content).filter((content) => String(content).startsWith("during"))).toEqual([
        "during 1",
        "during 3"
      ])
      expect((yield* sql`SELECT 1 FROM messages`).length).toBe(10)
      const metrics = yield* call(() => fetch(server.url + "/metrics").then((response) => response.text()))
      expect(metrics).toMatch(/^nexxi_storage_write_failures_total\{kind="transient"\} [1-9]/m)
    })
  )

  it.scopedLive("a turn whose commit was not acknowledged is written again, and stored once", () =>
    Effect.gen(function* () {
      const { proxy, url, sql } = yield* behindProxy
      const server = yield* startTestServer({ storage: StorageLive, env: { DATABASE_URL: url, ...fastRetries } })
      yield* proxy.cutNextAnswerTo("nexxi_record_turns")
      const response = yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "once" } }))
      expect(response.status).toBe(200)
      // Written once, the acknowledgement lost, written again: the second attempt found it there.
      yield* eventually(
        Effect.flatMap(
          call(() => fetch(server.url + "/ready")),
          json
        ),
        (body) => proxy.cuts() === 1 && body.dependencies.storage.detail === undefined
      )
      expect((yield* sql`SELECT request_id FROM usage`).map((row) => row.request_id)).toEqual([
        response.headers.get("x-request-id")
      ])
      expect((yield* sql`SELECT role FROM messages ORDER BY seq`).map((row) => row.role)).toEqual(["user", "assistant"])
    })
  )

  it.scopedLive("with the write queue full, admit refuses and recordTurn waits for room", () =>
    Effect.gen(function* () {
      const { proxy, url, sql } = yield* behindProxy
      const storage = yield* Effect.provide(
        Storage,
        yield* Layer.build(
          storageOn({ ...options("postgres"), queueSize: 2, timeoutMillis: 1_000, retryMaxDelayMillis: 100 }).pipe(
            Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })),
            Layer.orDie
          )
        )
      )
      yield* proxy.close
      const owner = `owner-${randomUUID()}`
      const failures = Metric.value(Metric.tagged(writeFailures, "kind", "transient"))
      const failedBefore = (yield* failures).count
      yield* storage.recordTurn(turnRecord(owner, sessionId(1), 1))
      // Once its write has failed, the writer retries it and takes nothing more from the queue until the database is
      // back. (Until then, it could still take the next turns with it, as one batch.)
      yield* eventually(failures, (state) => state.count > failedBefore)
      // One being written (and retried), two queued: full.
      for (const n of [2, 3]) yield* storage.recordTurn(turnRecord(owner, sessionId(n), n))
      const refused = yield* Effect.exit(storage.admit)
      expect(Exit.isFailure(refused) && JSON.stringify(refused.cause)).toContain("StorageUnavailable")
      const waiting = yield* Effect.fork(storage.recordTurn(turnRecord(owner, sessionId(4), 4)))
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)

      yield* proxy.open
      yield* Fiber.join(waiting)
      yield* eventually(sql`SELECT 1 FROM usage`, (rows) => rows.length === 4)
      yield* eventually(Effect.exit(storage.admit), Exit.isSuccess)
      expect((yield* sql`SELECT 1 FROM messages`).length).toBe(8)
    })
  )

  it.scopedLive("StorageLive uses DATABASE_URL when it is set", () =>
    Effect.gen(function* () {
      const url = yield* isolatedDatabase(adminUrl)
      const server = yield* startTestServer({ storage: StorageLive, env: { DATABASE_URL: url } })
      const body = yield* Effect.flatMap(
        call(() => fetch(server.url + "/ready")),
        json
      )
      expect(body.dependencies.storage).toEqual({ status: "up", kind: "postgres" })
    })
  )
})
