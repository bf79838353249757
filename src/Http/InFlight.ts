/**
 * The requests being answered right now (a streamed reply counts until its last byte), so that shutdown can let
 * them finish for a grace period and then interrupt the rest — whose finalizers then save partial replies.
 */
import { Effect, Fiber, Option, Stream, SubscriptionRef } from "effect"

export class InFlight extends Effect.Service<InFlight>()("nexxi/InFlight", {
  effect: Effect.gen(function* () {
    const fibers = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
    const count = yield* SubscriptionRef.make(0)
    let draining = false

    return {
      track: <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
        Effect.withFiberRuntime<A, E, R>((fiber) => {
          fibers.add(fiber)
          return SubscriptionRef.set(count, fibers.size).pipe(
            Effect.zipRight(effect),
            Effect.ensuring(Effect.suspend(() => (fibers.delete(fiber), SubscriptionRef.set(count, fibers.size))))
          )
        }),
      isDraining: () => draining,
      /** Waits until nothing is in flight or the grace period is over, then interrupts what is left. */
      drain: (graceMillis: number) =>
        Effect.gen(function* () {
          draining = true
          // Finalizers are uninterruptible: the wait must be made interruptible for the timeout to end it.
          const settled = yield* count.changes.pipe(
            Stream.filter((n) => n === 0),
            Stream.runHead,
            Effect.interruptible,
            Effect.timeoutOption(graceMillis)
          )
          if (Option.isNone(settled) && fibers.size > 0) {
            yield* Effect.logWarning(`Shutdown grace period over: interrupting ${fibers.size} request(s)`)
            yield* Fiber.interruptAll([...fibers])
          }
        }),
      size: () => fibers.size
    }
  })
}) {}
