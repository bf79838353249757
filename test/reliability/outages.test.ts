/**
 * Nexxi's stores going away while clients keep talking to it: a private Redis stopped and started again, the
 * PostgreSQL database unreachable (through a proxy the test closes) for `RELIABILITY_PG_OUTAGE_MS` (30 s by
 * default), and Redis, PostgreSQL and the model server all down at once. Clients get quick, clear answers
 * throughout, the process keeps serving /health, recovers by itself, and every turn it answered is stored once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { PgClient } from "@effect/sql-pg"
import { callEffect, jsonOf, nexxiProcess } from "../support/nexxi.js"
import { isolatedDatabaseBehindProxy } from "../support/postgres.js"
import { privateRedisServer } from "../support/redis.js"
import { eventually, serviceUrl } from "../support/services.js"
import { startTgi } from "../support/tgi.js"
import { type Outcome, startTraffic, type Traffic, tally } from "../support/traffic.js"

const PG_OUTAGE_MS = Number(process.env.RELIABILITY_PG_OUTAGE_MS ?? 30_000)
const ALL_OUTAGE_MS = Number(process.env.RELIABILITY_ALL_OUTAGE_MS ?? 5_000)

const count = (traffic: Traffic, from: number, which: (outcome: Outcome) => boolean) =>
  Effect.sync(() => traffic.since(from).filter(which).length)

const completed = (outcome: Outcome) => outcome.completed

/** Nothing crashed or hung: every request had an HTTP answer, none a 500, and /health answered 200 every time. */
const expectNoFailureOfNexxi = (traffic: Traffic) => {
  const summary = JSON.stringify(tally(traffic.outcomes))
  expect(
    traffic.outcomes.filter((outcome) => outcome.status === 0 || (outcome.status >= 500 && outcome.status !== 503)),
    summary
  ).toEqual([])
  expect(
    traffic.outcomes.filter((outcome) => outcome.type === "internal_error"),
    summary
  ).toEqual([])
  expect(traffic.health.length).toBeGreaterThan(0)
  expect(traffic.health.filter((probe) => !probe.ok)).toEqual([])
}

/** Every 503 says why, with Retry-After, and came at once rather than after a hang. */
const expectQuick503s = (outcomes: ReadonlyArray<Outcome>, types: ReadonlyArray<string>) => {
  for (const outcome of outcomes.filter((o) => o.status === 503)) {
    expect(types, JSON.stringify(outcome)).toContain(outcome.type)
    expect(Number(outcome.retryAfter), JSON.stringify(outcome)).toBeGreaterThan(0)
    expect(outcome.ms, JSON.stringify(outcome)).toBeLessThan(5_000)
  }
}

/** Every turn a client saw complete is in the database exactly once (its usage row, and its two messages). */
const expectStoredOnce = (sql: PgClient.PgClient, outcomes: ReadonlyArray<Outcome>) =>
  Effect.gen(function* () {
    const answered = outcomes.filter(completed).map((outcome) => outcome.requestId!)
    expect(new Set(answered).size).toBe(answered.length)
    yield* eventually(
      sql<{ n: string }>`SELECT count(*) AS n FROM usage WHERE status = 'completed'`,
      (rows) => Number(rows[0]!.n) >= answered.length,
      "60 seconds"
    )
    const stored = (yield* sql<{ request_id: string }>`
      SELECT request_id FROM usage WHERE status = 'completed'`).map((row) => row.request_id)
    expect(stored.length).toBe(new Set(stored).size)
    expect([...stored].sort()).toEqual([...answered].sort())
    const messages = yield* sql<{ n: string }>`
      SELECT count(*) AS n FROM messages m JOIN usage u ON u.turn_id = m.turn_id WHERE u.status = 'completed'`
    expect(Number(messages[0]!.n)).toBe(2 * answered.length)
  })

describe("Redis outage", () => {
  it.scopedLive(
    "Redis stopped during traffic: 503 session_unavailable at once, /ready down, /health up; started: served again",
    () =>
      Effect.gen(function* () {
        const redis = yield* privateRedisServer
        const nexxi = yield* nexxiProcess({
          REDIS_URL: redis.url,
          REDIS_CONNECT_TIMEOUT_MS: "500",
          REDIS_COMMAND_TIMEOUT_MS: "500"
        })
        const traffic = yield* startTraffic(nexxi)
        yield* eventually(count(traffic, 0, completed), (n) => n >= 6, "30 seconds")

        const down = traffic.now()
        yield* redis.stop
        yield* eventually(
          count(traffic, down, (o) => o.type === "session_unavailable"),
          (n) => n >= 6,
          "30 seconds"
        )
        const ready = yield* callEffect(nexxi, "/ready")
        expect(ready.status).toBe(503)
        expect((yield* jsonOf(ready)).dependencies.session).toMatchObject({ status: "down", kind: "redis" })

        const up = traffic.now()
        yield* redis.start
        yield* eventually(count(traffic, up, completed), (n) => n >= 6, "30 seconds")
        yield* traffic.stop
        yield* eventually(
          Effect.map(callEffect(nexxi, "/ready"), (response) => response.status),
          (status) => status === 200
        )

        expectNoFailureOfNexxi(traffic)
        expectQuick503s(traffic.outcomes, ["session_unavailable", "rate_limit_unavailable"])
        // Redis came back empty (no persistence): continuing a lost conversation is a 404, as for any unknown one.
        const other = traffic.outcomes.filter((o) => o.status !== 200 && o.status !== 503)
        expect(other.every((o) => o.status === 404 && o.type === "session_not_found" && o.at >= up)).toBe(true)
        // Streams cut by the outage end with an error event naming it, not a generic failure.
        const cut = traffic.outcomes.filter((o) => o.status === 200 && !o.completed)
        expect(
          cut.every((o) => o.type === "session_unavailable"),
          JSON.stringify(cut)
        ).toBe(true)
      })
  )
})

const databaseUrl = serviceUrl("DATABASE_URL", "reliability: PostgreSQL outages")

describe.skipIf(databaseUrl === undefined)("PostgreSQL outage", () => {
  const adminUrl = databaseUrl!
  const storageRetries = { STORAGE_RETRY_MAX_DELAY_MS: "500", STORAGE_TIMEOUT_MS: "1000" }

  it.scopedLive(
    `PostgreSQL unreachable for ${PG_OUTAGE_MS / 1000} s during traffic: every turn answered, stored afterwards, none twice`,
    () =>
      Effect.gen(function* () {
        const { url, proxy, sql } = yield* isolatedDatabaseBehindProxy(adminUrl)
        const nexxi = yield* nexxiProcess({ DATABASE_URL: url, ...storageRetries })
        const traffic = yield* startTraffic(nexxi, { spacingMs: 150 })
        yield* eventually(count(traffic, 0, completed), (n) => n >= 6, "30 seconds")

        yield* proxy.close
        const ready = yield* eventually(
          Effect.flatMap(callEffect(nexxi, "/ready"), jsonOf),
          (body) => body.dependencies.storage.status === "down"
        )
        expect(ready.status).toBe("not_ready")
        const history = yield* callEffect(nexxi, "/v1/conversations")
        expect(history.status).toBe(503)
        expect((yield* jsonOf(history)).error.type).toBe("storage_unavailable")
        // The outage's length is the scenario itself, not a wait for something to happen.
        yield* Effect.sleep(PG_OUTAGE_MS)
        const queued = yield* callEffect(nexxi, "/metrics").pipe(
          Effect.flatMap((response) => Effect.promise(() => response.text()))
        )
        expect(Number(/^nexxi_storage_queue_depth (\S+)$/m.exec(queued)?.[1])).toBeGreaterThan(0)

        const up = traffic.now()
        yield* proxy.open
        yield* eventually(count(traffic, up, completed), (n) => n >= 6, "30 seconds")
        yield* traffic.stop

        expectNoFailureOfNexxi(traffic)
        // Writes wait in the queue: no client noticed the database was gone.
        expect(
          traffic.outcomes.filter((o) => !o.completed),
          JSON.stringify(tally(traffic.outcomes))
        ).toEqual([])
        expect(traffic.outcomes.length).toBeGreaterThan(PG_OUTAGE_MS / 1000)
        yield* expectStoredOnce(sql, traffic.outcomes)
        yield* eventually(
          Effect.flatMap(callEffect(nexxi, "/ready"), jsonOf),
          (body) => body.dependencies.storage.status === "up"
        )
      }),
    { timeout: PG_OUTAGE_MS + 120_000 }
  )

  it.scopedLive("Redis, PostgreSQL and the model server down at once: 503s with reasons, then full recovery", () =>
    Effect.gen(function* () {
      const redis = yield* privateRedisServer
      const { url, proxy, sql } = yield* isolatedDatabaseBehindProxy(adminUrl)
      const tgi = yield* startTgi({ reply: "All good.", tokensPerSecond: 0 })
      const nexxi = yield* nexxiProcess({
        GENERATOR: "tgi",
        TGI_URL: tgi.url,
        GENERATOR_RETRY_BASE_MS: "20",
        GENERATOR_BREAKER_COOLDOWN_MS: "1000",
        REDIS_URL: redis.url,
        REDIS_CONNECT_TIMEOUT_MS: "500",
        REDIS_COMMAND_TIMEOUT_MS: "500",
        DATABASE_URL: url,
        ...storageRetries
      })
      const traffic = yield* startTraffic(nexxi)
      yield* eventually(count(traffic, 0, completed), (n) => n >= 6, "30 seconds")

      const down = traffic.now()
      yield* Effect.all(
        [redis.stop, proxy.close, Effect.promise(() => tgi.setOptions({ fault: { kind: "refuse" } }))],
        {
          concurrency: "unbounded"
        }
      )
      yield* eventually(
        count(traffic, down, (o) => o.status === 503),
        (n) => n >= 6,
        "30 seconds"
      )
      const ready = yield* eventually(
        Effect.flatMap(callEffect(nexxi, "/ready"), jsonOf),
        (body) => body.dependencies.session.status === "down" && body.dependencies.storage.status === "down"
      )
      expect(ready.status).toBe("not_ready")
      // The outage's length is the scenario itself, not a wait for something to happen.
      yield* Effect.sleep(ALL_OUTAGE_MS)

      const up = traffic.now()
      yield* Effect.all([redis.start, proxy.open, Effect.promise(() => tgi.setOptions({ fault: undefined }))], {
        concurrency: "unbounded"
      })
      yield* eventually(count(traffic, up, completed), (n) => n >= 6, "30 seconds")
      yield* traffic.stop

      expectNoFailureOfNexxi(traffic)
      expectQuick503s(traffic.outcomes, [
        "session_unavailable",
        "generator_unavailable",
        "storage_unavailable",
        "rate_limit_unavailable"
      ])
      const other = traffic.outcomes.filter((o) => o.status !== 200 && o.status !== 503)
      expect(other.every((o) => o.status === 404 && o.type === "session_not_found" && o.at >= up)).toBe(true)
      yield* expectStoredOnce(sql, traffic.outcomes)
      yield* eventually(
        Effect.map(callEffect(nexxi, "/ready"), (response) => response.status),
        (status) => status === 200,
        "20 seconds"
      )
    })
  )
})
