/**
 * Steady client traffic against a Nexxi process, for tests that break its dependencies while it serves: workers
 * that hold conversations (new turns, continued turns, whole replies and streams) and a prober of /health, each
 * recording what it saw, so that a test can say what every client got during and after a fault.
 */
import { Effect, Fiber, Schedule, type Scope } from "effect"
import { RELIABILITY_KEY } from "./nexxi.js"
import { readSse } from "./sse.js"

export interface Outcome {
  /** Milliseconds since the traffic started. */
  readonly at: number
  /** How long the answer took, to its last byte. */
  readonly ms: number
  readonly path: string
  /** 0: no HTTP answer at all (connection failed, or none within the request timeout). */
  readonly status: number
  /** The error's `type`: from the JSON body, or from the stream's `error` event. */
  readonly type: string | undefined
  readonly requestId: string | null
  readonly retryAfter: string | null
  /** A reply that arrived whole: 200 with its message, or a stream that ended with its final event. */
  readonly completed: boolean
}

export interface Probe {
  readonly at: number
  readonly ok: boolean
}

export interface Traffic {
  readonly outcomes: ReadonlyArray<Outcome>
  readonly health: ReadonlyArray<Probe>
  /** Milliseconds since the traffic started. */
  readonly now: () => number
  /** Outcomes from `since` (ms) on. */
  readonly since: (at: number) => ReadonlyArray<Outcome>
  /** Stops the workers, letting requests in progress finish (each is bounded by the request timeout). */
  readonly stop: Effect.Effect<void>
}

export interface TrafficOptions {
  readonly workers?: number
  /** Pause between one worker's requests: the load stays steady rather than as fast as the machine goes. */
  readonly spacingMs?: number
  readonly requestTimeoutMs?: number
  readonly key?: string
}

const errorType = (body: unknown): string | undefined =>
  typeof body === "object" && body !== null && "error" in body ? (body as any).error?.type : undefined

/** Starts the traffic for the scope (stopped when it closes, if not before). */
export const startTraffic = (
  target: { readonly url: string },
  options: TrafficOptions = {}
): Effect.Effect<Traffic, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { workers = 2, spacingMs = 100, requestTimeoutMs = 15_000, key = RELIABILITY_KEY } = options
    const started = performance.now()
    const now = () => performance.now() - started
    const outcomes: Array<Outcome> = []
    const health: Array<Probe> = []
    let stopping = false

    const turn = async (worker: number, n: number, session: string | undefined) => {
      const stream = n % 3 === 2
      const path = stream ? "/v1/chat/stream" : "/v1/chat"
      const at = now()
      const body = { message: `worker ${worker} turn ${n}`, ...(session === undefined ? {} : { session_id: session }) }
      try {
        const response = await fetch(target.url + path, {
          method: "POST",
          headers: { "x-api-key": key, "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(requestTimeoutMs)
        })
        const base = {
          at,
          path,
          status: response.status,
          requestId: response.headers.get("x-request-id"),
          retryAfter: response.headers.get("retry-after")
        }
        if (response.status !== 200) {
          const type = errorType(await response.json().catch(() => undefined))
          return { outcome: { ...base, type, completed: false, ms: now() - at }, session: undefined }
        }
        if (!stream) {
          const reply = (await response.json()) as { session_id: string }
          return { outcome: { ...base, type: undefined, completed: true, ms: now() - at }, session: reply.session_id }
        }
        const events = await readSse(response).rest()
        const last = events.at(-1)
        const data = last === undefined ? undefined : JSON.parse(last.data)
        const completed = last?.event !== "error" && data?.finished === true
        return {
          outcome: { ...base, type: last?.event === "error" ? errorType(data) : undefined, completed, ms: now() - at },
          session: data?.session_id as string | undefined
        }
      } catch {
        return {
          outcome: {
            at,
            ms: now() - at,
            path,
            status: 0,
            type: "no_answer",
            requestId: null,
            retryAfter: null,
            completed: false
          },
          session: undefined
        }
      }
    }

    const worker = (id: number) =>
      Effect.gen(function* () {
        let session: string | undefined
        for (let n = 0; !stopping; n++) {
          // Every fourth turn starts a new conversation; the others continue the current one.
          const result = yield* Effect.promise(() => turn(id, n, n % 4 === 0 ? undefined : session))
          outcomes.push(result.outcome)
          session = result.outcome.completed ? result.session : undefined
          yield* Effect.sleep(spacingMs)
        }
      })

    const probe = Effect.promise(async () => {
      const at = now()
      const ok = await fetch(target.url + "/health", { signal: AbortSignal.timeout(1_000) }).then(
        (response) => response.status === 200,
        () => false
      )
      health.push({ at, ok })
    }).pipe(Effect.repeat(Schedule.spaced("200 millis")))

    const fibers = yield* Effect.forEach(
      Array.from({ length: workers }, (_, id) => id),
      (id) => Effect.forkScoped(worker(id))
    )
    const prober = yield* Effect.forkScoped(probe)
    const stop = Effect.gen(function* () {
      stopping = true
      yield* Fiber.joinAll(fibers)
      yield* Fiber.interrupt(prober)
    })
    yield* Effect.addFinalizer(() => Effect.suspend(() => (stopping ? Effect.void : stop)))
    return {
      outcomes,
      health,
      now,
      since: (at: number) => outcomes.filter((outcome) => outcome.at >= at),
      stop
    }
  })

/** A readable summary for assertion messages: how many of each (path, status, type). */
export const tally = (outcomes: ReadonlyArray<Outcome>) => {
  const counts = new Map<string, number>()
  for (const { path, status, type } of outcomes) {
    const key = `${path} ${status}${type === undefined ? "" : ` ${type}`}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return Object.fromEntries([...counts].sort())
}
