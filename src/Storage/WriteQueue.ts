/**
 * The write queue between requests and the database: a request hands its turn over and goes on, one writer writes
 * the turns in order, retrying through outages. Nothing is dropped silently:
 *
 * - the queue is bounded; `isFull` lets new requests be refused (503) before they produce a turn, and `offer`
 *   waits for room rather than drop one;
 * - a write that fails for a transient reason (connection lost, timeout, server restarting) is retried with
 *   `storageWriteRetry` for as long as it takes; one that can never succeed (the database rejects the data) is
 *   logged and counted as lost;
 * - when the scope closes (shutdown), the queue is flushed for up to `flushTimeout`; what is still unwritten is
 *   logged, one line per item, and counted as lost.
 *
 * Writes must be idempotent: after an ambiguous failure (the commit happened, the connection died before saying
 * so) the retry writes the same item again.
 */
import {
  Data,
  Duration,
  Effect,
  Fiber,
  Metric,
  Option,
  Queue,
  Schedule,
  type Scope,
  Stream,
  SubscriptionRef
} from "effect"

/** A failed attempt to write one item. `transient`: the same write may succeed later. */
export class WriteFailed extends Data.TaggedError("WriteFailed")<{
  readonly transient: boolean
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * Between attempts to write a turn: 100 ms, doubling, capped at `maxDelay` (so that a recovered database is used
 * again soon), with jitter so that replicas do not retry in step. Unbounded: transient failures are retried until
 * the database is back or shutdown gives up.
 */
export const storageWriteRetry = (maxDelay: Duration.DurationInput) =>
  Schedule.exponential("100 millis", 2).pipe(Schedule.either(Schedule.spaced(maxDelay)), Schedule.jittered)

export const queueDepth = Metric.gauge("nexxi_storage_queue_depth", {
  description: "Turns accepted but not yet written to the database (queued, being written, or waiting for room)."
})

export const writeFailures = Metric.counter("nexxi_storage_write_failures_total", {
  description:
    "Failed attempts to write a turn to the database, by kind: transient (retried) or permanent (the turn is lost).",
  incremental: true
})

export const turnsLost = Metric.counter("nexxi_storage_turns_lost_total", {
  description:
    "Turns that could not be written: rejected by the database, still queued when shutdown gave up, or dropped " +
    "while waiting for room because their request was interrupted. Each is logged.",
  incremental: true
})

export interface WriteQueueOptions<A> {
  readonly capacity: number
  readonly write: (item: A) => Effect.Effect<void, WriteFailed>
  readonly retry: Schedule.Schedule<unknown, WriteFailed>
  readonly flushTimeout: Duration.DurationInput
  /** Identifies an item in log lines (ids, never content). */
  readonly describe: (item: A) => Readonly<Record<string, string>>
  /** Called once for each item when the queue is done with it: written, or lost. */
  readonly settled?: (item: A) => void
}

export interface WriteQueue<A> {
  /** Hands an item over; waits while the queue is full. */
  readonly offer: (item: A) => Effect.Effect<void>
  readonly isFull: Effect.Effect<boolean>
  /** Items accepted and not yet written. */
  readonly pending: Effect.Effect<number>
}

const failureKind = (failure: WriteFailed) => (failure.transient ? "transient" : "permanent")

export const makeWriteQueue = <A>(options: WriteQueueOptions<A>): Effect.Effect<WriteQueue<A>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const queue = yield* Queue.bounded<A>(options.capacity)
    const pending = yield* SubscriptionRef.make(0)
    // Visible from the first scrape, at 0.
    yield* Metric.incrementBy(writeFailures, 0)
    yield* Metric.incrementBy(turnsLost, 0)
    yield* Metric.set(queueDepth, 0)

    const changePending = (delta: number) =>
      Effect.flatMap(
        SubscriptionRef.updateAndGet(pending, (n) => n + delta),
        (n) => Metric.set(queueDepth, n)
      )

    const settle = (item: A) =>
      Effect.zipRight(
        Effect.sync(() => options.settled?.(item)),
        changePending(-1)
      )

    const lost = (item: A, reason: string) =>
      Effect.logError(`Storage: a turn could not be written (${reason})`).pipe(
        Effect.annotateLogs(options.describe(item)),
        Effect.zipRight(Metric.increment(turnsLost)),
        Effect.zipRight(settle(item))
      )

    const writeOne = (item: A) =>
      options.write(item).pipe(
        Effect.tapError((failure) =>
          Metric.increment(Metric.tagged(writeFailures, "kind", failureKind(failure))).pipe(
            Effect.zipRight(
              Effect.logWarning(`Storage: writing a turn failed (${failureKind(failure)}): ${failure.message}`)
            ),
            Effect.annotateLogs(options.describe(item))
          )
        ),
        Effect.retry({ schedule: options.retry, while: (failure) => failure.transient }),
        Effect.matchEffect({
          onFailure: (failure) => lost(item, `rejected by the database: ${failure.message}`),
          onSuccess: () => settle(item)
        })
      )

    // The item being written is no longer in the queue: kept here so that shutdown can report it.
    let current: Option.Option<A> = Option.none()
    const writer = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(Queue.take(queue)), (item) => {
        current = Option.some(item)
        // Left set when interrupted mid-write, so that shutdown reports the item.
        return Effect.zipRight(
          restore(writeOne(item)),
          Effect.sync(() => (current = Option.none()))
        )
      })
    ).pipe(Effect.forever)
    const writerFiber = yield* Effect.forkDaemon(writer)

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        // Finalizers are uninterruptible: the wait must be made interruptible for the timeout to end it.
        const flushed = yield* pending.changes.pipe(
          Stream.filter((n) => n === 0),
          Stream.runHead,
          Effect.interruptible,
          Effect.timeoutOption(options.flushTimeout)
        )
        yield* Fiber.interrupt(writerFiber)
        const queued = yield* Queue.takeAll(queue)
        const left = Option.toArray(current).length + queued.length
        if (Option.isNone(flushed) && left > 0) {
          yield* Effect.logError(
            `Storage: shutting down with ${left} turn(s) unwritten after ${Duration.format(options.flushTimeout)}`
          )
          if (Option.isSome(current)) {
            yield* lost(current.value, "being written at shutdown: it may or may not have been")
          }
          yield* Effect.forEach(queued, (item) => lost(item, "still queued at shutdown"), { discard: true })
        }
        // Requests still waiting for room are interrupted, and log their turn as lost.
        yield* Queue.shutdown(queue)
      })
    )

    /**
     * No room: waits, interruptibly even in a finalizer, so that neither a request that is gone nor shutdown waits
     * forever; the turn is then logged as lost. (With room, `offer` never waits, so it cannot be interrupted.)
     */
    const waitForRoom = (item: A) =>
      Effect.interruptible(Queue.offer(queue, item)).pipe(
        Effect.asVoid,
        Effect.onInterrupt(() => lost(item, "its request ended while waiting for room in the write queue"))
      )

    return {
      offer: (item: A) =>
        Effect.uninterruptible(
          Effect.zipRight(
            changePending(1),
            Effect.suspend(() => (queue.unsafeOffer(item) ? Effect.void : waitForRoom(item)))
          )
        ),
      isFull: Effect.map(Queue.size(queue), (size) => size >= options.capacity),
      pending: SubscriptionRef.get(pending)
    }
  })
