/**
 * The write queue between requests and the database: a request hands its turn over and goes on, one writer writes
 * the turns in order, retrying through outages. Under load it takes what is waiting (up to `maxBatch` items) and
 * writes it with one `writeBatch` call (one transaction, one commit); a batch that fails is written again item by
 * item, so that the guarantees below hold per item. Nothing is dropped silently:
 *
 * - the queue is bounded; `isFull` lets new requests be refused (503) before they produce a turn, and `offer`
 *   waits for room rather than drop one;
 * - a write that fails for a transient reason (connection lost, timeout, server restarting) is retried with
 *   `storageWriteRetry` for as long as it takes; one that can never succeed (the database rejects the data) is
 *   logged and counted as lost;
 * - when the scope closes (shutdown), the queue is flushed for up to `flushTimeout`; what is still unwritten is
 *   logged, one line per item (each item of a batch being written too), and counted as lost.
 *
 * Writes must be idempotent: after an ambiguous failure (the commit happened, the connection died before saying
 * so) the retry writes the same item again, alone or in a batch.
 */
import {
  Chunk,
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

/** A failed attempt to write one item (or a batch). `transient`: the same write may succeed later. */
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
    "Failed attempts to write turns to the database, by kind: transient (retried; a failed batch counts once and " +
    "its turns are retried one by one) or permanent (the turn is lost).",
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
  /**
   * Writes several items at once, all or none (one transaction). Without it, items are written one at a time. When
   * it fails, for any reason, the items are written one by one with `write`.
   */
  readonly writeBatch?: (items: ReadonlyArray<A>) => Effect.Effect<void, WriteFailed>
  /** The most items given to one `writeBatch` call; 64 unless said. */
  readonly maxBatch?: number
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
  /** Items accepted and not yet written (queued, being written, or waiting for room). */
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

    // Items taken from the queue and not yet settled: out of the queue, kept here so that shutdown can report them.
    const inFlight: Array<A> = []

    // Uninterruptible: an item is settled once, and then no longer reported by shutdown.
    const settle = (item: A) =>
      Effect.uninterruptible(
        Effect.suspend(() => {
          const index = inFlight.indexOf(item)
          if (index >= 0) inFlight.splice(index, 1)
          options.settled?.(item)
          return changePending(-1)
        })
      )

    const lost = (item: A, reason: string) =>
      Effect.logError(`Storage: a turn could not be written (${reason})`).pipe(
        Effect.annotateLogs(options.describe(item)),
        Effect.zipRight(Metric.increment(turnsLost)),
        Effect.zipRight(settle(item)),
        Effect.uninterruptible
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

    const writeEach = (items: ReadonlyArray<A>) => Effect.forEach(items, writeOne, { discard: true })

    /**
     * A failed batch is one failed attempt, counted as transient whatever its cause: its items are retried, one by
     * one, and only an item that fails alone for good is lost.
     */
    const writeBatch = (batch: NonNullable<WriteQueueOptions<A>["writeBatch"]>, items: ReadonlyArray<A>) =>
      batch(items).pipe(
        Effect.matchEffect({
          onSuccess: () => Effect.uninterruptible(Effect.forEach(items, settle, { discard: true })),
          onFailure: (failure) =>
            Metric.increment(Metric.tagged(writeFailures, "kind", "transient")).pipe(
              Effect.zipRight(
                Effect.logWarning(
                  `Storage: writing a batch of ${items.length} turns failed (${failureKind(failure)}), ` +
                    `writing them one by one: ${failure.message}`
                ).pipe(Effect.annotateLogs("batch_size", String(items.length)))
              ),
              Effect.zipRight(writeEach(items))
            )
        })
      )

    const write = (items: ReadonlyArray<A>) =>
      items.length > 1 && options.writeBatch !== undefined ? writeBatch(options.writeBatch, items) : writeEach(items)

    // Without `writeBatch`, one at a time: an item taken early would only wait out of the queue.
    const maxBatch = options.writeBatch === undefined ? 1 : Math.max(1, options.maxBatch ?? 64)
    const writer = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(Queue.take(queue)), (first) =>
        // Whatever else is waiting, taken in the same uninterruptible step so that none is out of the queue unseen.
        Effect.flatMap(Queue.takeUpTo(queue, maxBatch - 1), (rest) => {
          const items = [first, ...Chunk.toReadonlyArray(rest)]
          inFlight.push(...items)
          // Items still unsettled when interrupted stay in `inFlight`, for shutdown to report.
          return restore(write(items))
        })
      )
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
        // A copy: `lost` settles each item, which takes it out of `inFlight`.
        const beingWritten = [...inFlight]
        const left = beingWritten.length + queued.length
        if (Option.isNone(flushed) && left > 0) {
          yield* Effect.logError(
            `Storage: shutting down with ${left} turn(s) unwritten after ${Duration.format(options.flushTimeout)}`
          )
          yield* Effect.forEach(
            beingWritten,
            (item) => lost(item, "being written at shutdown: it may or may not have been"),
            { discard: true }
          )
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
