/**
 * How Nexxi survives a misbehaving model server, whatever the backend: retries with backoff (only before the first
 * token, so no text is ever sent twice), a time-to-first-token timeout, an idle timeout between tokens, an optional
 * total deadline, and a circuit breaker that fails fast while the server keeps failing.
 */
import {
  Chunk,
  Clock,
  Data,
  Either,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  Metric,
  Option,
  Ref,
  Schedule,
  Scope,
  Stream
} from "effect"
import {
  type GenerationChunk,
  type GenerationPull,
  GeneratorFailed,
  type GeneratorError,
  GeneratorTimeout,
  GeneratorUnavailable,
  InputTooLong,
  startingWith,
  streamOfPulls
} from "../Generator.js"

/** What went wrong upstream, before it is told to a client. */
export type UpstreamKind = "unavailable" | "overloaded" | "input_too_long" | "timeout" | "failed" | "circuit_open"

export class UpstreamError extends Data.TaggedError("UpstreamError")<{
  readonly kind: UpstreamKind
  readonly message: string
  readonly retryAfterSeconds?: number
}> {}

/** Worth another attempt: the server was unreachable or busy, and nothing was generated yet. */
export const isTransient = (error: UpstreamError): boolean =>
  error.kind === "unavailable" || error.kind === "overloaded"

/** A client waits at least this long before retrying a busy or unreachable model server. */
const DEFAULT_RETRY_AFTER_SECONDS = 1

export const toClientError = (error: UpstreamError): GeneratorError => {
  switch (error.kind) {
    case "unavailable":
    case "overloaded":
    case "circuit_open":
      return new GeneratorUnavailable({
        message: error.message,
        retry_after_seconds: error.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS
      })
    case "input_too_long":
      return new InputTooLong({ message: error.message })
    case "timeout":
      return new GeneratorTimeout({ message: error.message })
    case "failed":
      return new GeneratorFailed({ message: error.message })
  }
}

export interface ResilienceSettings {
  readonly maxRetries: number
  readonly retryBaseMs: number
  /** No retry starts after this much time has been spent retrying. */
  readonly retryBudgetMs: number
  readonly firstTokenTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly deadlineMs: Option.Option<number>
  readonly breakerThreshold: number
  readonly breakerCooldownMs: number
}

/** Exponential backoff with jitter, at most `maxRetries` retries, within the retry budget. */
export const upstreamRetryPolicy = (settings: ResilienceSettings) =>
  Schedule.exponential(Duration.millis(settings.retryBaseMs)).pipe(
    Schedule.jittered,
    Schedule.intersect(Schedule.recurs(settings.maxRetries)),
    Schedule.upTo(Duration.millis(settings.retryBudgetMs))
  )

// Metrics (see src/Metrics.ts for the conventions).

const upstreamErrors = Metric.counter("nexxi_generator_errors_total", {
  description: "Failed attempts to generate, by kind (unavailable, overloaded, timeout, ...).",
  incremental: true
})
const upstreamRetries = Metric.counter("nexxi_generator_retries_total", {
  description: "Attempts to reach the model server again after a transient failure.",
  incremental: true
})
const circuitStateGauge = Metric.gauge("nexxi_generator_circuit_state", {
  description: "The model server's circuit breaker: 0 closed, 1 half-open (one trial request), 2 open (failing fast)."
})

export type CircuitState =
  | { readonly _tag: "Closed"; readonly failures: number }
  | { readonly _tag: "Open"; readonly until: number }
  | { readonly _tag: "HalfOpen" }

const stateValue = { Closed: 0, HalfOpen: 1, Open: 2 } as const

export interface CircuitBreaker {
  /** Lets a request through, or fails fast while the circuit is open (one trial passes once it cools down). */
  readonly admit: Effect.Effect<void, UpstreamError>
  readonly onSuccess: Effect.Effect<void>
  readonly onFailure: (error: UpstreamError) => Effect.Effect<void>
  readonly state: Effect.Effect<CircuitState>
}

/**
 * Opens after `threshold` consecutive transient failures; after `cooldownMs` one trial request goes through:
 * its success closes the circuit, its failure opens it again.
 */
export const makeCircuitBreaker = (threshold: number, cooldownMs: number, name: string) =>
  Effect.gen(function* () {
    const state = yield* Ref.make<CircuitState>({ _tag: "Closed", failures: 0 })
    const set = (next: CircuitState, message?: string) =>
      Effect.zipRight(
        Ref.set(state, next),
        Effect.zipRight(
          Metric.set(circuitStateGauge, stateValue[next._tag]),
          message === undefined ? Effect.void : Effect.logWarning(message).pipe(Effect.annotateLogs("upstream", name))
        )
      )
    yield* Metric.set(circuitStateGauge, 0)

    const admit = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const current = yield* Ref.get(state)
      if (current._tag === "Closed") return
      if (current._tag === "Open" && now >= current.until) {
        return yield* set({ _tag: "HalfOpen" }, "Circuit half-open: letting one trial request through")
      }
      const retryAfterSeconds = current._tag === "Open" ? Math.ceil((current.until - now) / 1000) : 1
      return yield* new UpstreamError({
        kind: "circuit_open",
        message: "The model server is failing; requests are refused for a while to let it recover",
        retryAfterSeconds
      })
    })

    const onSuccess = Effect.flatMap(Ref.get(state), (current) =>
      current._tag === "Closed" && current.failures === 0
        ? Effect.void
        : set(
            { _tag: "Closed", failures: 0 },
            current._tag === "Closed" ? undefined : "Circuit closed: the model server answers again"
          )
    )

    const onFailure = (error: UpstreamError) =>
      !isTransient(error)
        ? Effect.void
        : Effect.gen(function* () {
            const current = yield* Ref.get(state)
            const now = yield* Clock.currentTimeMillis
            const failures = current._tag === "Closed" ? current.failures + 1 : threshold
            if (failures < threshold) return yield* Ref.set(state, { _tag: "Closed", failures })
            yield* set(
              { _tag: "Open", until: now + cooldownMs },
              `Circuit open after ${failures} consecutive failures: failing fast for ${cooldownMs} ms`
            )
          })

    return { admit, onSuccess, onFailure, state: Ref.get(state) } satisfies CircuitBreaker
  })

const timeout = (message: string) => new UpstreamError({ kind: "timeout", message: `The model server ${message}` })

/** The next chunks of one attempt upstream; `None` once it has ended. */
export type UpstreamPull = Effect.Effect<Chunk.Chunk<GenerationChunk>, Option.Option<UpstreamError>>

/** The attempt a generation's watchdog is watching, and how long it may stay quiet. */
interface Watched {
  readonly scope: Scope.CloseableScope
  /** When it started, or last produced a chunk. */
  since: number
  /** Quiet for GENERATOR_FIRST_TOKEN_TIMEOUT_MS before it, for GENERATOR_IDLE_TIMEOUT_MS after. */
  producing: boolean
  /** Why the watchdog closed it: what its pending read failed of. */
  expired: Option.Option<UpstreamError>
}

/**
 * A generation made resilient, as pulls. `open` starts one attempt, in the scope it is given; closing that scope must
 * abort it (its pending read then fails or ends). Attempts are retried while they fail transiently before their
 * first chunk. Once a chunk has been produced the generation is never restarted: a later failure ends it.
 */
export const resilientPull = (
  open: Effect.Effect<UpstreamPull, never, Scope.Scope>,
  settings: ResilienceSettings,
  breaker: CircuitBreaker
): Effect.Effect<GenerationPull, never, Scope.Scope> =>
  Effect.gen(function* () {
    const recordFailure = (error: UpstreamError) =>
      Effect.zipRight(Metric.increment(Metric.tagged(upstreamErrors, "kind", error.kind)), breaker.onFailure(error))
    const clock = yield* Effect.clock
    const outer = yield* Effect.scope
    // GENERATOR_DEADLINE_MS: what is left of it bounds every wait, from the first attempt to the last token.
    const deadline = Option.map(settings.deadlineMs, (ms) => ({
      at: clock.unsafeCurrentTimeMillis() + ms,
      failure: Option.some(timeout(`did not finish within ${ms} ms`))
    }))
    const withinDeadline = <A>(effect: Effect.Effect<A, Option.Option<UpstreamError>>) =>
      Option.match(deadline, {
        onNone: () => effect,
        onSome: ({ at, failure }) => {
          // Measured when the wait starts, not when it is built.
          return Effect.suspend(() => {
            const left = at - clock.unsafeCurrentTimeMillis()
            return left <= 0
              ? Effect.fail(failure)
              : Effect.timeoutFail(effect, { duration: Duration.millis(left), onTimeout: () => failure })
          })
        }
      })

    // The first-token and idle timeouts: one watchdog fiber for the whole generation, rather than a timeout around
    // the first read (two fibers and a race per attempt) and a timer raced against every token (fibers per token).
    // When the attempt it watches stays quiet too long it closes the attempt's scope, which aborts the upstream
    // request; the pending read then fails, and is told as a timeout.
    let watched: Watched | undefined
    // Its sleeps are never longer than the shorter limit, so that a limit that shrinks (first token → idle) is kept.
    const longestSleepMs = Math.min(settings.firstTokenTimeoutMs, settings.idleTimeoutMs)
    const watchdog: Effect.Effect<void> = Effect.suspend(() => {
      const current = watched
      if (current === undefined) return Effect.zipRight(Effect.sleep(longestSleepMs), watchdog)
      const limit = current.producing ? settings.idleTimeoutMs : settings.firstTokenTimeoutMs
      const left = limit - (clock.unsafeCurrentTimeMillis() - current.since)
      if (left > 0) return Effect.zipRight(Effect.sleep(Math.min(left, longestSleepMs)), watchdog)
      watched = undefined
      current.expired = Option.some(
        current.producing
          ? timeout(`stopped sending tokens for ${settings.idleTimeoutMs} ms`)
          : timeout(`sent no token within ${settings.firstTokenTimeoutMs} ms`)
      )
      return Effect.zipRight(Scope.close(current.scope, Exit.void), watchdog)
    })
    yield* Effect.forkScoped(watchdog)
    /** The attempt ended or failed: nothing left to watch. */
    const unwatch = Effect.sync(() => void (watched = undefined))

    /** What the attempt's read failed of: the watchdog's reason, when it closed the attempt. */
    const reasonOf = (attempt: Watched, error: Option.Option<UpstreamError>) =>
      Option.isSome(attempt.expired) ? attempt.expired : error

    const attempt = Effect.gen(function* () {
      yield* breaker.admit.pipe(Effect.mapError(Option.some))
      // Each attempt gets its own scope: closing it aborts that attempt's upstream request.
      const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
      const current: Watched = {
        scope,
        since: clock.unsafeCurrentTimeMillis(),
        producing: false,
        expired: Option.none()
      }
      watched = current
      const pull = yield* Scope.extend(open, scope)
      const first = yield* pull.pipe(
        Effect.mapError((error) => reasonOf(current, error)),
        Effect.tapError(Option.match({ onNone: () => Effect.void, onSome: recordFailure })),
        Effect.onError(() => Effect.zipRight(unwatch, Scope.close(scope, Exit.void)))
      )
      current.since = clock.unsafeCurrentTimeMillis()
      current.producing = true
      yield* breaker.onSuccess
      return { first, pull, current }
    })

    const outcome = yield* attempt.pipe(
      Effect.tapError((error) =>
        Option.isSome(error) && isTransient(error.value)
          ? Effect.logWarning(`Model server attempt failed (${error.value.kind}): ${error.value.message}`)
          : Effect.void
      ),
      Effect.retry({
        schedule: upstreamRetryPolicy(settings).pipe(Schedule.tapOutput(() => Metric.increment(upstreamRetries))),
        while: (error) => Option.isSome(error) && isTransient(error.value)
      }),
      withinDeadline,
      Effect.either
    )
    const toClient = Effect.mapError(Option.map(toClientError))
    // `None`: the generation ended without producing anything.
    if (Either.isLeft(outcome)) return toClient(Effect.fail(outcome.left))
    const { first, pull, current } = outcome.right
    const next = pull.pipe(
      Effect.map((chunk) => ((current.since = clock.unsafeCurrentTimeMillis()), chunk)),
      Effect.mapError((error) => reasonOf(current, error)),
      Effect.tapError((error) =>
        Effect.zipRight(unwatch, Option.match(error, { onNone: () => Effect.void, onSome: recordFailure }))
      ),
      withinDeadline,
      toClient
    )
    return startingWith(first, next)
  })

/** `resilientPull` over an attempt given as a stream (backends and tests that produce streams). */
export const resilientStream = (
  open: () => Stream.Stream<GenerationChunk, UpstreamError>,
  settings: ResilienceSettings,
  breaker: CircuitBreaker
): Stream.Stream<GenerationChunk, GeneratorError> =>
  streamOfPulls(
    resilientPull(
      Effect.suspend(() => Stream.toPull(open())),
      settings,
      breaker
    )
  )
