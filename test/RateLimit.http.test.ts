/**
 * API keys and rate limits through the real HttpApi. One replica with the embedded defaults (limits in memory,
 * managed keys in memory); then, with REDIS_URL and DATABASE_URL, two replicas sharing one Redis and one database,
 * as a deployment behind a load balancer: a key's limits hold for both together, and a key revoked is refused by both
 * within 5 s.
 */
import { describe, expect, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Clock, Context, DateTime, Effect, Layer, Option, Redacted, Stream } from "effect"
import { defaultLimits, generateKey, type KeyLimits, Keys, makeKeys } from "../src/Keys.js"
import { KeysLive, makeSqlKeyStore } from "../src/Keys/Postgres.js"
import { GenerationChunk, Generator } from "../src/Generator.js"
import { freePort } from "./support/process.js"
import { isolatedDatabase } from "./support/postgres.js"
import { isolatedPrefix } from "./support/redis.js"
import { startTestServer, TEST_API_KEY, type TestServer } from "./support/server.js"
import { eventually, serviceUrl } from "./support/services.js"
import { readSse } from "./support/sse.js"

const redisUrl = serviceUrl("REDIS_URL", "the rate limits shared by two replicas (Redis)")
const databaseUrl = serviceUrl("DATABASE_URL", "the managed keys shared by two replicas (PostgreSQL)")

const json = (response: Response) => Effect.promise(() => response.json() as Promise<any>)
const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)

/** Limits off unless a test sets them, so that each test sees only the limit it is about. */
const unlimited = {
  RATE_LIMIT_RPM: "0",
  RATE_LIMIT_TPM: "0",
  RATE_LIMIT_CONCURRENCY: "0",
  AUTH_FAILURES_PER_MINUTE: "0"
}

const chat = (server: TestServer, key: string, message = "hello") =>
  call(() => server.request("/v1/chat", { method: "POST", json: { message }, headers: { "x-api-key": key } }))

const conversations = (server: TestServer, key: string, headers: Record<string, string> = {}) =>
  call(() => server.request("/v1/conversations", { headers: { "x-api-key": key, ...headers } }))

const rateLimitHeaders = (response: Response) =>
  Object.fromEntries([...response.headers].filter(([name]) => name.startsWith("ratelimit") || name === "retry-after"))

/** A model that sends one token and then thinks forever: its turn lasts until the client goes away. */
const endlessGenerator = Generator.Test(() =>
  Stream.concat(Stream.make(GenerationChunk.Token({ text: "thinking" })), Stream.never)
)

/** A chat stream; once open (its first event read), it lasts until `close`. A refusal's body is read at once. */
const openStream = (server: TestServer, key: string) =>
  Effect.gen(function* () {
    const controller = new AbortController()
    const response = yield* call(() =>
      server.request("/v1/chat/stream", {
        method: "POST",
        json: { message: "go on" },
        headers: { "x-api-key": key },
        signal: controller.signal
      })
    )
    const error = response.status === 200 ? undefined : (yield* json(response)).error
    if (response.status === 200) yield* call(() => readSse(response).next())
    return { status: response.status, headers: response.headers, error, close: Effect.sync(() => controller.abort()) }
  })

/** Until no chat stream is open on the server side (the process's gauge): turns ended, their slots freed. */
const streamsEnded = (server: TestServer) =>
  eventually(
    call(() => fetch(server.url + "/metrics").then((response) => response.text())),
    (text) => /^nexxi_chat_active_streams 0$/m.test(text)
  )

/** The tokens left in the `RateLimit` field of the current draft. */
const tokensLeft = (response: Response) => Number(/"tokens";r=(\d+)/.exec(response.headers.get("ratelimit") ?? "")?.[1])

describe("rate limits over HTTP (one replica, in memory)", () => {
  it.scopedLive("a key gets its requests per minute, every response says how many are left, then 429", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer({ env: { ...unlimited, RATE_LIMIT_RPM: "3" } })
      for (const remaining of [2, 1, 0]) {
        const response = yield* conversations(server, TEST_API_KEY)
        expect(response.status).toBe(200)
        const headers = rateLimitHeaders(response)
        expect(headers).toMatchObject({
          "ratelimit-limit": "3",
          "ratelimit-remaining": String(remaining),
          "ratelimit-policy": '"requests";q=3;w=60'
        })
        expect(Number(headers["ratelimit-reset"])).toBeGreaterThan(0)
        expect(Number(headers["ratelimit-reset"])).toBeLessThanOrEqual(60)
        expect(headers.ratelimit).toBe(`"requests";r=${remaining};t=${headers["ratelimit-reset"]}`)
      }
      // Every limited route shares the budget: the chat turn is the fourth request.
      const refused = yield* chat(server, TEST_API_KEY)
      expect(refused.status).toBe(429)
      const headers = rateLimitHeaders(refused)
      expect(headers).toMatchObject({ "ratelimit-limit": "3", "ratelimit-remaining": "0" })
      expect(Number(headers["retry-after"])).toBeGreaterThan(0)
      expect(Number(headers["retry-after"])).toBeLessThanOrEqual(60)
      const body = yield* json(refused)
      expect(body.error).toMatchObject({
        type: "rate_limited",
        limit: "requests",
        retry_after_seconds: Number(headers["retry-after"]),
        request_id: refused.headers.get("x-request-id")
      })
      expect(body.error.message).toContain("3 requests per minute")

      // Operational routes are not limited.
      const health = yield* call(() => fetch(server.url + "/health"))
      expect(rateLimitHeaders(health)).toEqual({})
      const metrics = yield* call(() => fetch(server.url + "/metrics").then((response) => response.text()))
      expect(metrics).toMatch(/^nexxi_rate_limited_total\{limit="requests"\} [1-9]/m)
      expect(metrics).toMatch(/^nexxi_rate_limit_fail_open_total \d+/m)
    })
  )

  it.scopedLive("a turn is charged its real tokens; one that does not fit the rest of the minute gets 429", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer({
        env: { ...unlimited, RATE_LIMIT_TPM: "400", MAX_NEW_TOKENS: "40" }
      })
      let used = 0
      let response = yield* chat(server, TEST_API_KEY)
      while (response.status === 200) {
        used += (yield* json(response)).tokens_used
        // After a whole reply, the headers tell what is left after its real count.
        expect(tokensLeft(response)).toBe(400 - used)
        expect(response.headers.get("ratelimit-policy")).toBe('"tokens";q=400;w=60;qu="tokens"')
        expect(response.headers.get("ratelimit-limit")).toBe("400")
        response = yield* chat(server, TEST_API_KEY)
      }
      expect(used).toBeGreaterThan(0)
      expect(response.status).toBe(429)
      expect((yield* json(response)).error).toMatchObject({ type: "rate_limited", limit: "tokens" })
      expect(tokensLeft(response)).toBe(400 - used)
      expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0)
    })
  )

  it.scopedLive("a key runs at most its concurrency in turns; a stream holds its slot until it ends", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer({
        env: { ...unlimited, RATE_LIMIT_CONCURRENCY: "1" },
        generator: endlessGenerator
      })
      const first = yield* openStream(server, TEST_API_KEY)
      expect(first.status).toBe(200)
      expect(first.headers.get("ratelimit")).toBe('"concurrency";r=0')
      expect(first.headers.get("ratelimit-policy")).toBe('"concurrency";q=1;qu="concurrent-requests"')

      const refused = yield* openStream(server, TEST_API_KEY)
      expect(refused.status).toBe(429)
      expect(refused.headers.get("retry-after")).toBe("1")
      expect(refused.error).toMatchObject({ limit: "concurrency", retry_after_seconds: 1 })
      // Other endpoints are not turns: they still answer.
      expect((yield* conversations(server, TEST_API_KEY)).status).toBe(200)

      yield* first.close
      const next = yield* eventually(openStream(server, TEST_API_KEY), ({ status }) => status === 200)
      yield* next.close
      yield* streamsEnded(server)
    })
  )

  it.scopedLive("failed authentications: 429 for that address, right key included, and only for it", () =>
    Effect.gen(function* () {
      const direct = yield* startTestServer({ env: { ...unlimited, AUTH_FAILURES_PER_MINUTE: "2" } })
      for (const key of ["wrong-1", "wrong-2"]) expect((yield* conversations(direct, key)).status).toBe(401)
      const blocked = yield* conversations(direct, TEST_API_KEY)
      expect(blocked.status).toBe(429)
      expect((yield* json(blocked)).error).toMatchObject({ limit: "auth_failures", retry_after_seconds: 60 })
      expect(blocked.headers.get("retry-after")).toBe("60")
      // Without TRUST_PROXY, X-Forwarded-For is the client's own say: ignored.
      expect((yield* conversations(direct, TEST_API_KEY, { "x-forwarded-for": "198.51.100.77" })).status).toBe(429)

      // Behind one proxy: the address it appended is the client's; a client cannot pick another by prepending.
      const proxied = yield* startTestServer({
        env: { ...unlimited, AUTH_FAILURES_PER_MINUTE: "2", TRUST_PROXY: "1" }
      })
      const from = (address: string) => ({ "x-forwarded-for": address })
      for (const key of ["wrong-1", "wrong-2"]) {
        expect((yield* conversations(proxied, key, from("198.51.100.1"))).status).toBe(401)
      }
      expect((yield* conversations(proxied, TEST_API_KEY, from("198.51.100.1"))).status).toBe(429)
      expect((yield* conversations(proxied, TEST_API_KEY, from("203.0.113.9, 198.51.100.1"))).status).toBe(429)
      expect((yield* conversations(proxied, TEST_API_KEY, from("198.51.100.2"))).status).toBe(200)
      const metrics = yield* call(() => fetch(direct.url + "/metrics").then((response) => response.text()))
      expect(metrics).toMatch(/^nexxi_rate_limited_total\{limit="auth_failures"\} [1-9]/m)
    })
  )

  it.scopedLive("a managed key is its own caller, with its own limits; revoked, it is refused", () =>
    Effect.gen(function* () {
      const { store, layer } = Keys.Test()
      const server = yield* startTestServer({ env: { ...unlimited, RATE_LIMIT_RPM: "100" }, keys: layer })
      const limits: KeyLimits = { ...defaultLimits, requestsPerMinute: Option.some(2) }
      const { key, stored } = generateKey({ name: "app", limits, now: DateTime.unsafeNow() })
      yield* store.store.insert(stored)

      const mine = yield* chat(server, key)
      expect(mine.status).toBe(200)
      expect(mine.headers.get("ratelimit-limit")).toBe("2")
      const { session_id } = yield* json(mine)
      // Sessions belong to the key that made them: for the API_KEY this one does not exist.
      expect((yield* call(() => server.request(`/v1/chat/session/${session_id}`))).status).toBe(404)
      const own = yield* call(() => server.request(`/v1/chat/session/${session_id}`, { headers: { "x-api-key": key } }))
      expect(own.status).toBe(200)
      // The API_KEY keeps the server's default.
      expect((yield* conversations(server, TEST_API_KEY)).headers.get("ratelimit-limit")).toBe("100")
      expect((yield* chat(server, key)).status).toBe(429)

      yield* store.store.revoke({ idOrPrefix: stored.id, keyHash: "" }, DateTime.unsafeNow())
      const revoked = yield* conversations(server, key)
      expect(revoked.status).toBe(401)
      expect((yield* json(revoked)).error.message).toBe("Invalid or revoked API key")
    })
  )

  it.scopedLive("Redis unreachable: closed answers 503 with Retry-After; open lets requests through, counted", () =>
    Effect.gen(function* () {
      const env = {
        ...unlimited,
        RATE_LIMIT_RPM: "5",
        // Nothing listens there.
        REDIS_URL: `redis://127.0.0.1:${yield* call(freePort)}`,
        REDIS_CONNECT_TIMEOUT_MS: "100",
        REDIS_COMMAND_TIMEOUT_MS: "200"
      }
      const closed = yield* startTestServer({ env: { ...env, RATE_LIMIT_FAIL_MODE: "closed" } })
      const refused = yield* conversations(closed, TEST_API_KEY)
      expect(refused.status).toBe(503)
      expect(refused.headers.get("retry-after")).toBe("2")
      expect((yield* json(refused)).error.type).toBe("rate_limit_unavailable")
      expect(closed.logs.some((line) => line.includes("fail closed"))).toBe(true)

      const open = yield* startTestServer({ env: { ...env, RATE_LIMIT_FAIL_MODE: "open" } })
      const metric = () =>
        call(() => fetch(open.url + "/metrics").then((response) => response.text())).pipe(
          Effect.map((text) => Number(/^nexxi_rate_limit_fail_open_total (\d+)/m.exec(text)?.[1]))
        )
      const before = yield* metric()
      expect((yield* conversations(open, TEST_API_KEY)).status).toBe(200)
      expect(yield* metric()).toBe(before + 1)
      expect(open.logs.some((line) => line.includes("fail open") && line.includes('"level":"warn"'))).toBe(true)
    })
  )
})

describe.runIf(redisUrl !== undefined && databaseUrl !== undefined)(
  "two replicas on one Redis and one database",
  () => {
    /** Two servers of one deployment, and the key store as the CLI sees it. */
    const deployment = (env: Record<string, string> = {}, generator?: Layer.Layer<Generator>) =>
      Effect.gen(function* () {
        const database = yield* isolatedDatabase(databaseUrl!)
        const shared = {
          ...unlimited,
          REDIS_URL: redisUrl!,
          REDIS_KEY_PREFIX: yield* isolatedPrefix(redisUrl!),
          DATABASE_URL: database,
          ...env
        }
        const start = startTestServer({ env: shared, keys: KeysLive, ...(generator ? { generator } : {}) })
        const [a, b] = [yield* start, yield* start]
        const admin = yield* Layer.build(
          Layer.scoped(
            Keys,
            Effect.flatMap(makeSqlKeyStore({ timeoutMillis: 5_000 }), (store) =>
              makeKeys(store, { cacheMillis: 0, lastUsedFlushMillis: 60_000 })
            )
          ).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(database), maxConnections: 1 })), Layer.orDie)
        )
        const keys = Context.get(admin, Keys)
        const create = (limits: Partial<KeyLimits>) =>
          Effect.map(keys.create({ name: "client", limits: { ...defaultLimits, ...limits } }), ({ key }) =>
            Redacted.value(key)
          )
        return { a, b, keys, create }
      })

    it.scopedLive("a key with N requests per minute gets exactly N successes across both, the rest 429", () =>
      Effect.gen(function* () {
        const { a, b, create } = yield* deployment()
        const key = yield* create({ requestsPerMinute: Option.some(5) })
        // All at once, half to each replica.
        const responses = yield* Effect.forEach(
          Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? a : b)),
          (server) => conversations(server, key),
          { concurrency: "unbounded" }
        )
        const ok = responses.filter((response) => response.status === 200)
        const refused = responses.filter((response) => response.status === 429)
        expect([ok.length, refused.length]).toEqual([5, 7])
        // One counter for both: each success saw a different number left.
        expect(ok.map((response) => Number(response.headers.get("ratelimit-remaining"))).sort()).toEqual([
          0, 1, 2, 3, 4
        ])
        for (const response of refused) {
          expect(rateLimitHeaders(response)).toMatchObject({ "ratelimit-limit": "5", "ratelimit-remaining": "0" })
          expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0)
          expect((yield* json(response)).error.limit).toBe("requests")
        }
      })
    )

    it.scopedLive("a key's tokens per minute are shared: every turn's real count, on either replica, adds up", () =>
      Effect.gen(function* () {
        const { a, b, create } = yield* deployment({ MAX_NEW_TOKENS: "40" })
        const key = yield* create({ tokensPerMinute: Option.some(600) })
        let used = 0
        const served = { a: 0, b: 0 }
        for (let i = 0; ; i++) {
          const server = i % 2 === 0 ? a : b
          const response = yield* chat(server, key)
          if (response.status !== 200) {
            expect(response.status).toBe(429)
            expect((yield* json(response)).error.limit).toBe("tokens")
            // What this replica says is left is what both used together.
            expect(tokensLeft(response)).toBe(600 - used)
            break
          }
          used += (yield* json(response)).tokens_used
          served[server === a ? "a" : "b"]++
        }
        expect(served.a).toBeGreaterThan(1)
        expect(served.b).toBeGreaterThan(1)
      })
    )

    it.scopedLive("a key's concurrency holds across both: a third stream is refused by either", () =>
      Effect.gen(function* () {
        const { a, b, create } = yield* deployment({}, endlessGenerator)
        const key = yield* create({ concurrency: Option.some(2) })
        const first = yield* openStream(a, key)
        const second = yield* openStream(b, key)
        expect([first.status, second.status]).toEqual([200, 200])
        for (const server of [a, b]) {
          const refused = yield* openStream(server, key)
          expect([refused.status, refused.error.limit]).toEqual([429, "concurrency"])
        }
        yield* first.close
        const third = yield* eventually(openStream(b, key), ({ status }) => status === 200)
        yield* Effect.all([second.close, third.close])
        yield* streamsEnded(a)
      })
    )

    it.scopedLive("failed authentications from one address count on both replicas", () =>
      Effect.gen(function* () {
        const { a, b, create } = yield* deployment({ AUTH_FAILURES_PER_MINUTE: "3" })
        const key = yield* create({})
        for (const server of [a, b, a]) expect((yield* conversations(server, "nx_wrong")).status).toBe(401)
        expect((yield* conversations(b, key)).status).toBe(429)
      })
    )

    it.scopedLive("a revoked key is refused by both replicas within 5 s", () =>
      Effect.gen(function* () {
        const { a, b, keys, create } = yield* deployment()
        const key = yield* create({})
        // Both have it in their caches.
        for (const server of [a, b]) expect((yield* conversations(server, key)).status).toBe(200)
        const start = yield* Clock.currentTimeMillis
        yield* keys.revoke(key.slice(0, 11))
        yield* Effect.all(
          [a, b].map((server) =>
            eventually(
              Effect.map(conversations(server, key), (response) => response.status),
              (status) => status === 401,
              "5 seconds"
            )
          ),
          { concurrency: "unbounded" }
        )
        expect((yield* Clock.currentTimeMillis) - start).toBeLessThan(5_000)
      })
    )
  }
)
