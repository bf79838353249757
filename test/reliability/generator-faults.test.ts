/**
 * The model server misbehaving under a running Nexxi process: each fault gives the client the answer the README
 * promises, and the same process serves normally as soon as the model server does (no restart).
 */
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import type { TgiRuntimeOptions, TgiServer } from "../../dev/tgi/server.js"
import type { NexxiProcess } from "../support/process.js"
import { healthy, jsonOf, nexxiProcess, post } from "../support/nexxi.js"
import { readSse } from "../support/sse.js"
import { startTgi } from "../support/tgi.js"

class Setup extends Context.Tag("reliability/GeneratorFaults")<
  Setup,
  { readonly nexxi: NexxiProcess; readonly tgi: TgiServer }
>() {}

const FIRST_TOKEN_TIMEOUT_MS = 1_500

const SetupLive = Layer.scoped(
  Setup,
  Effect.gen(function* () {
    const tgi = yield* startTgi({ reply: "The model is fine.", tokensPerSecond: 200 })
    const nexxi = yield* nexxiProcess({
      GENERATOR: "tgi",
      TGI_URL: tgi.url,
      GENERATOR_MAX_RETRIES: "2",
      GENERATOR_RETRY_BASE_MS: "20",
      GENERATOR_FIRST_TOKEN_TIMEOUT_MS: String(FIRST_TOKEN_TIMEOUT_MS),
      GENERATOR_IDLE_TIMEOUT_MS: "1500",
      // The breaker has its own tests; here every fault must reach the model server.
      GENERATOR_BREAKER_THRESHOLD: "1000"
    })
    return { nexxi, tgi }
  })
)

/** Sets a fault for the scope of the test; the model server behaves again when it closes. */
const withFault = (tgi: TgiServer, options: TgiRuntimeOptions) =>
  Effect.acquireRelease(
    Effect.promise(() => tgi.setOptions(options)),
    () => Effect.promise(() => tgi.setOptions({ fault: undefined, failTimes: undefined, firstTokenDelayMs: 0 }))
  )

/** After the fault is gone, the same process answers a whole reply and a stream. */
const recovers = (nexxi: NexxiProcess) =>
  Effect.gen(function* () {
    const reply = yield* post(nexxi, "/v1/chat", { message: "Are you back?" })
    expect(reply.status).toBe(200)
    expect((yield* jsonOf(reply)).message).toBe("The model is fine.")
    const stream = yield* post(nexxi, "/v1/chat/stream", { message: "Stream again" })
    const events = yield* Effect.promise(() => readSse(stream).rest())
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ finished: true })
    expect(yield* healthy(nexxi)).toBe(true)
  })

/** A failure before the first token is a plain HTTP error on both endpoints, with the common body. */
const refusedWith = (nexxi: NexxiProcess, status: number, type: string) =>
  Effect.gen(function* () {
    for (const path of ["/v1/chat", "/v1/chat/stream"]) {
      const response = yield* post(nexxi, path, { message: "Hello?" })
      expect(response.status, path).toBe(status)
      expect(response.headers.get("content-type")).toContain("application/json")
      const { error } = yield* jsonOf(response)
      expect(error).toMatchObject({ type, request_id: response.headers.get("x-request-id") })
      if (status === 503) expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0)
    }
  })

/** A failure after the first token: the stream has the tokens so far, one `error` event, and ends unfinished. */
const cutShort = (nexxi: NexxiProcess) =>
  Effect.gen(function* () {
    const response = yield* post(nexxi, "/v1/chat/stream", { message: "Tell me more" })
    expect(response.status).toBe(200)
    const events = yield* Effect.promise(() => readSse(response).rest())
    const deltas = events.filter((event) => event.event === undefined || event.event === "message")
    expect(deltas.length).toBeGreaterThan(0)
    expect(deltas.some((event) => JSON.parse(event.data).finished === true)).toBe(false)
    expect(events.at(-1)!.event).toBe("error")
    const { error } = JSON.parse(events.at(-1)!.data)
    expect(error.type).toMatch(/^generator_/)
    expect(error.request_id).toBe(response.headers.get("x-request-id"))
    // The whole-reply endpoint has not answered yet: the same failure is an HTTP error there, never a 500.
    const whole = yield* post(nexxi, "/v1/chat", { message: "And the whole of it?" })
    expect([502, 503, 504]).toContain(whole.status)
    expect((yield* jsonOf(whole)).error.type).toMatch(/^generator_/)
  })

/** Runs `during` while the model server has the fault, then checks that the same process recovers. */
const underFault = (
  options: TgiRuntimeOptions,
  during: (setup: Context.Tag.Service<Setup>) => Effect.Effect<void, never, Setup>
) =>
  Effect.gen(function* () {
    const setup = yield* Setup
    yield* Effect.scoped(Effect.zipRight(withFault(setup.tgi, options), during(setup)))
    yield* recovers(setup.nexxi)
  })

layer(SetupLive, { excludeTestServices: true, timeout: "90 seconds" })("model server faults", (it) => {
  it.effect("refusing connections: 503 generator_unavailable with Retry-After, then recovery", () =>
    underFault({ fault: { kind: "refuse" } }, ({ nexxi }) =>
      Effect.gen(function* () {
        yield* refusedWith(nexxi, 503, "generator_unavailable")
        expect(yield* healthy(nexxi)).toBe(true)
      })
    )
  )

  for (const status of [429, 503]) {
    it.effect(`answering ${status}: retried, then 503 generator_unavailable with Retry-After, then recovery`, () =>
      underFault({ fault: { kind: "status", status } }, ({ nexxi, tgi }) =>
        Effect.gen(function* () {
          const before = tgi.requests.length
          yield* refusedWith(nexxi, 503, "generator_unavailable")
          // Two requests, each tried more than once.
          const tried = tgi.requests.slice(before).filter((request) => request.status === status)
          expect(tried.length).toBeGreaterThan(2)
        })
      )
    )
  }

  it.effect("stalling before the first token: 504 generator_timeout in time, upstream abandoned, then recovery", () =>
    underFault({ fault: { kind: "stall", afterTokens: 0 } }, ({ nexxi, tgi }) =>
      Effect.gen(function* () {
        const started = performance.now()
        yield* refusedWith(nexxi, 504, "generator_timeout")
        // Two requests, each given up after the first-token timeout (with room for a slow machine).
        expect(performance.now() - started).toBeLessThan(2 * FIRST_TOKEN_TIMEOUT_MS + 4_000)
        // Nexxi hung up on the stalled requests rather than leaving them open.
        yield* Effect.promise(() =>
          tgi.waitFor((request) => request.fault === "stall" && request.disconnectedAt !== undefined, 5_000)
        )
      })
    )
  )

  it.effect("dropping the connection mid-stream: an error event ends the stream, then recovery", () =>
    underFault({ fault: { kind: "drop", afterTokens: 2 } }, ({ nexxi }) => cutShort(nexxi))
  )

  it.effect("an error event mid-stream: an error event ends the stream, then recovery", () =>
    underFault({ fault: { kind: "errorEvent", afterTokens: 2, message: "CUDA out of memory" } }, ({ nexxi }) =>
      cutShort(nexxi)
    )
  )
})
