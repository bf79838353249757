/**
 * Isolation between API keys: with the configured API_KEY and a managed key (made with the keys CLI), every
 * endpoint that names a session or a conversation is tried with the other key, both ways (read, continue, delete,
 * list): always 404, never a byte of the other's data, and the owner's conversation is untouched. The key check
 * takes as long whether a wrong key matches in its first character or in all but its last.
 */
import { expect, it, layer } from "@effect/vitest"
import { HttpServerRequest } from "@effect/platform"
import { Context, Effect, Exit, Layer, Redacted } from "effect"
import { AppConfig } from "../../src/AppConfig.js"
import { ApiKeyAuth, ApiKeyAuthLive } from "../../src/Auth.js"
import { Keys } from "../../src/Keys.js"
import { RateLimitLive } from "../../src/RateLimit/Live.js"
import {
  callEffect,
  createManagedKey,
  jsonOf,
  nexxiProcess,
  post,
  RELIABILITY_KEY,
  storageEnv
} from "../support/nexxi.js"
import type { NexxiProcess } from "../support/process.js"
import { testConfig } from "../support/server.js"
import { eventually } from "../support/services.js"
import { readSse } from "../support/sse.js"

class Setup extends Context.Tag("reliability/Isolation")<
  Setup,
  { readonly nexxi: NexxiProcess; readonly managedKey: string }
>() {}

const SetupLive = Layer.scoped(
  Setup,
  Effect.gen(function* () {
    const storage = yield* storageEnv
    // As an operator would: the CLI writes the key into the database Nexxi then reads.
    const managedKey = yield* createManagedKey(storage, "second client")
    const nexxi = yield* nexxiProcess(storage)
    return { nexxi, managedKey }
  })
)

/** A conversation of `owner` with a secret in it, stored (readable from the history) before the test goes on. */
const conversationOf = (nexxi: NexxiProcess, owner: string, secret: string) =>
  Effect.gen(function* () {
    const first = yield* post(nexxi, "/v1/chat", { message: `My secret is ${secret}` }, owner)
    expect(first.status).toBe(200)
    const { session_id } = yield* jsonOf(first)
    yield* eventually(
      Effect.map(callEffect(nexxi, `/v1/conversations/${session_id}`, { key: owner }), (response) => response.status),
      (status) => status === 200
    )
    return session_id as string
  })

/** Every way another key could reach the conversation. */
const attempts = (sessionId: string) =>
  [
    ["read the session", "GET", `/v1/chat/session/${sessionId}`, undefined],
    ["continue it", "POST", "/v1/chat", { session_id: sessionId, message: "What is my secret?" }],
    ["continue it as a stream", "POST", "/v1/chat/stream", { session_id: sessionId, message: "What is my secret?" }],
    ["continue it with stream: true", "POST", "/v1/chat", { session_id: sessionId, message: "Secret?", stream: true }],
    ["read the stored conversation", "GET", `/v1/conversations/${sessionId}`, undefined],
    ["delete it", "DELETE", "/v1/chat/session", { session_id: sessionId }]
  ] as const

const expectIsolated = (nexxi: NexxiProcess, owner: string, intruder: string, secret: string) =>
  Effect.gen(function* () {
    const sessionId = yield* conversationOf(nexxi, owner, secret)
    for (const [what, method, path, json] of attempts(sessionId)) {
      const response = yield* callEffect(nexxi, path, { method, key: intruder, ...(json ? { json } : {}) })
      const text = yield* Effect.promise(() => response.text())
      expect(response.status, `${what}: ${text}`).toBe(404)
      // Unknown and another key's look the same: `session_not_found` (or `conversation_not_found` for history).
      expect(JSON.parse(text).error.type, what).toMatch(/^(session|conversation)_not_found$/)
      expect(text, what).not.toContain(secret)
    }
    // Listing: the intruder's own conversations only.
    const listed = yield* callEffect(nexxi, "/v1/conversations?limit=100", { key: intruder })
    expect(listed.status).toBe(200)
    const listing = yield* Effect.promise(() => listed.text())
    expect(listing).not.toContain(sessionId)
    expect(listing).not.toContain(secret)

    // The owner's conversation is as it was: nothing added by the intruder, nothing deleted.
    const session = yield* jsonOf(yield* callEffect(nexxi, `/v1/chat/session/${sessionId}`, { key: owner }))
    expect(session.messages.map((message: { role: string }) => message.role)).toEqual(["user", "assistant"])
    expect(session.messages[0].content).toContain(secret)
    const stored = yield* jsonOf(yield* callEffect(nexxi, `/v1/conversations/${sessionId}`, { key: owner }))
    expect(stored.messages).toHaveLength(2)
    // And the owner can still continue it.
    const next = yield* post(nexxi, "/v1/chat/stream", { session_id: sessionId, message: "Still mine?" }, owner)
    const events = yield* Effect.promise(() => readSse(next).rest())
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ session_id: sessionId, finished: true })
  })

layer(SetupLive, { excludeTestServices: true, timeout: "90 seconds" })("isolation between keys", (it) => {
  it.effect("the managed key cannot read, continue, delete or list API_KEY's conversation: 404, no data", () =>
    Effect.flatMap(Setup, ({ nexxi, managedKey }) =>
      expectIsolated(nexxi, RELIABILITY_KEY, managedKey, "azure-penguin-4411")
    )
  )

  it.effect("API_KEY cannot read, continue, delete or list the managed key's conversation: 404, no data", () =>
    Effect.flatMap(Setup, ({ nexxi, managedKey }) =>
      expectIsolated(nexxi, managedKey, RELIABILITY_KEY, "crimson-otter-9302")
    )
  )
})

// --- Timing of the key check -----------------------------------------------------------------------------------

/** A long key, so that a comparison that stopped at the first difference would take measurably less time. */
const LONG_KEY = "k".repeat(1024 * 1024)

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

it.live("the key check takes as long for a wrong key that differs at its first character as at its last", () =>
  Effect.gen(function* () {
    const auth = yield* ApiKeyAuth
    // The key travels in the request's header, as from a client; built once, so that only the check is timed.
    const requestWith = (key: string) =>
      HttpServerRequest.fromWeb(new Request("http://127.0.0.1/v1/chat", { headers: { "x-api-key": key } }))
    const check = (key: { readonly value: Redacted.Redacted; readonly request: HttpServerRequest.HttpServerRequest }) =>
      // The check reads only the request; the middleware's type also offers it the route's context.
      (auth.apiKey(key.value) as Effect.Effect<unknown, unknown, HttpServerRequest.HttpServerRequest>).pipe(
        Effect.provideService(HttpServerRequest.HttpServerRequest, key.request),
        Effect.exit
      )
    const keyed = (key: string) => ({ value: Redacted.make(key), request: requestWith(key) })
    const candidates = {
      early: keyed("x" + LONG_KEY.slice(1)),
      late: keyed(LONG_KEY.slice(0, -1) + "x")
    }
    const right = yield* check(keyed(LONG_KEY))
    expect(Exit.isSuccess(right), String(right)).toBe(true)
    const timings: Record<keyof typeof candidates, Array<number>> = { early: [], late: [] }
    // Interleaved, in batches, after a warm-up: drift and garbage collection hit both alike.
    for (let round = 0; round < 45; round++) {
      for (const which of round % 2 === 0 ? (["early", "late"] as const) : (["late", "early"] as const)) {
        const started = performance.now()
        for (let n = 0; n < 3; n++) expect(Exit.isFailure(yield* check(candidates[which]))).toBe(true)
        if (round >= 5) timings[which].push(performance.now() - started)
      }
    }
    const ratio = median(timings.late) / median(timings.early)
    expect(ratio).toBeGreaterThan(0.75)
    expect(ratio).toBeLessThan(1.33)
  }).pipe(
    Effect.provide(
      ApiKeyAuthLive.pipe(
        Layer.provide([Keys.Test().layer, RateLimitLive]),
        Layer.provideMerge(AppConfig.Default),
        Layer.provide(testConfig({ API_KEY: LONG_KEY, AUTH_FAILURES_PER_MINUTE: "0" }))
      )
    )
  )
)
