/**
 * SIGTERM while 20 streams are live and their turns are queued for a database that is unreachable: Nexxi refuses
 * new connections, lets every stream finish within SHUTDOWN_GRACE_MS, writes every queued turn once the database
 * answers, and exits 0.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { call, nexxiProcess } from "../support/nexxi.js"
import { isolatedDatabaseBehindProxy } from "../support/postgres.js"
import { eventually, serviceUrl } from "../support/services.js"
import { readSse } from "../support/sse.js"

const STREAMS = 20
const GRACE_MS = 15_000
const FLUSH_TIMEOUT_MS = 10_000

const databaseUrl = serviceUrl("DATABASE_URL", "reliability: shutdown with queued writes")

describe.skipIf(databaseUrl === undefined)("graceful shutdown under load", () => {
  it.scopedLive(
    `SIGTERM during ${STREAMS} live streams: refuses new connections, finishes them, flushes, exits 0`,
    () =>
      Effect.gen(function* () {
        const { url, proxy, sql } = yield* isolatedDatabaseBehindProxy(databaseUrl!)
        const nexxi = yield* nexxiProcess({
          DATABASE_URL: url,
          // About three seconds a reply: the streams are live when the signal comes.
          ECHO_TOKEN_DELAY_MS: "100",
          SHUTDOWN_GRACE_MS: String(GRACE_MS),
          STORAGE_FLUSH_TIMEOUT_MS: String(FLUSH_TIMEOUT_MS),
          STORAGE_RETRY_MAX_DELAY_MS: "300",
          STORAGE_TIMEOUT_MS: "1000"
        })
        const streams = yield* Effect.forEach(
          Array.from({ length: STREAMS }, (_, n) => n),
          (n) =>
            Effect.promise(async () => {
              const response = await call(nexxi, "/v1/chat/stream", {
                method: "POST",
                json: { message: `stream ${n} should be told to the end, word after word` }
              })
              expect(response.status).toBe(200)
              const events = readSse(response)
              expect(JSON.parse((await events.next())!.data).finished).toBe(false)
              return { requestId: response.headers.get("x-request-id")!, events }
            }),
          { concurrency: "unbounded" }
        )
        // The turns will be saved while the database is unreachable: they wait in the queue.
        yield* proxy.close

        const signalledAt = performance.now()
        nexxi.child.kill("SIGTERM")
        yield* Effect.promise(() => nexxi.waitForOutput("Shutting down"))
        const refused = yield* Effect.promise(() =>
          fetch(nexxi.url + "/health").then(
            () => false,
            () => true
          )
        )
        expect(refused).toBe(true)

        const endings = yield* Effect.forEach(
          streams,
          ({ events }) =>
            Effect.promise(() => events.rest().then((rest) => rest.map((event) => JSON.parse(event.data)))),
          { concurrency: "unbounded" }
        )
        const finishedAt = performance.now()
        for (const rest of endings) expect(rest.at(-1)).toMatchObject({ finished: true, model: "echo" })
        expect(finishedAt - signalledAt).toBeLessThan(GRACE_MS)
        // Every turn is now waiting for the database; it comes back while Nexxi flushes.
        expect(nexxi.child.exitCode).toBe(null)
        yield* proxy.open

        expect(yield* Effect.promise(() => nexxi.exited)).toBe(0)
        expect(performance.now() - signalledAt).toBeLessThan(GRACE_MS + FLUSH_TIMEOUT_MS)
        const stored = yield* eventually(
          sql<{ request_id: string }>`SELECT request_id FROM usage`,
          (rows) => rows.length >= STREAMS,
          "5 seconds"
        )
        expect(stored.map((row) => row.request_id).sort()).toEqual(streams.map((stream) => stream.requestId).sort())
        expect(nexxi.stdout()).not.toMatch(/could not write|turns? lost/i)
      })
  )
})
