/**
 * The write queue between requests and the database, with a scripted `write` (and `writeBatch`) and the TestClock:
 * retries with backoff, back-pressure, batches and their fallback to writes one by one, and what shutdown does with
 * turns still unwritten.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Clock,
  Deferred,
  type Duration,
  Effect,
  Exit,
  Fiber,
  HashMap,
  List,
  Logger,
  Metric,
  Option,
  Queue,
  Scope,
  TestClock
} from "effect"
import {
  makeWriteQueue,
  storageWriteRetry,
  turnsLost,
  WriteFailed,
  writeFailures,
  type WriteQueue
} from "../src/Storage/WriteQueue.js"

interface Script {
  /** What each attempt does, by item: fail (transiently or for good), or succeed. */
  readonly outcome: (item: string, attempt: number) => Effect.Effect<void, WriteFailed>
  /** What each batch attempt does; without it, the queue has no `writeBatch`. */
  readonly batch?: (items: ReadonlyArray<string>) => Effect.Effect<void, WriteFailed>
  readonly maxBatch?: number
}

const transient = new WriteFailed({ transient: true, message: "connection refused" })
const permanent = new WriteFailed({ transient: false, message: "value out of range" })

/**
 * A queue on a scope the test closes, with every attempt reported on `attempts` (batch attempts on `batches`) and the
 * log lines kept.
 */
const makeQueue = (script: Script, capacity = 10, maxDelay: Duration.DurationInput = "300 millis") =>
  Effect.gen(function* () {
    const attempts = yield* Queue.unbounded<readonly [string, number]>()
    const batches = yield* Queue.unbounded<ReadonlyArray<string>>()
    const written: Array<string> = []
    const settled: Array<string> = []
    const logs: Array<{ readonly message: string; readonly item?: string }> = []
    const counts = new Map<string, number>()
    const logger = Logger.make(({ annotations, message }) =>
      logs.push({
        message: String(List.isList(message) ? List.toArray(message).join(" ") : message),
        ...Option.match(HashMap.get(annotations, "item"), {
          onNone: () => ({}),
          onSome: (item) => ({ item: String(item) })
        })
      })
    )
    const scope = yield* Scope.make()
    const { batch, maxBatch } = script
    const queue = yield* makeWriteQueue<string>({
      capacity,
      ...(maxBatch === undefined ? {} : { maxBatch }),
      ...(batch === undefined
        ? {}
        : {
            writeBatch: (items) =>
              Queue.offer(batches, items).pipe(
                Effect.zipRight(batch(items)),
                Effect.tap(() => Effect.sync(() => written.push(...items)))
              )
          }),
      retry: storageWriteRetry(maxDelay),
      flushTimeout: "1 second",
      describe: (item) => ({ item }),
      settled: (item) => void settled.push(item),
      write: (item) =>
        Effect.suspend(() => {
          const attempt = (counts.get(item) ?? 0) + 1
          counts.set(item, attempt)
          return Queue.offer(attempts, [item, attempt] as const).pipe(
            Effect.zipRight(script.outcome(item, attempt)),
            Effect.tap(() => Effect.sync(() => written.push(item)))
          )
        })
    }).pipe(Scope.extend(scope), Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
    return { queue, attempts, batches, written, settled, logs, scope }
  })

/** Lets the writer fiber run up to its next wait. */
const settle = Effect.repeatN(Effect.yieldNow(), 50)

/** The counts of failed attempts by kind and of turns lost, to compare before and after (metrics are global). */
const failureCounts = Effect.all({
  transient: Metric.value(Metric.tagged(writeFailures, "kind", "transient")),
  permanent: Metric.value(Metric.tagged(writeFailures, "kind", "permanent")),
  lost: Metric.value(turnsLost)
}).pipe(
  Effect.map((states) => ({
    transient: states.transient.count,
    permanent: states.permanent.count,
    lost: states.lost.count
  }))
)

/** Holds the writer on "a" (whose write waits for `gate`), queues `items` meanwhile, then lets "a" finish. */
const waitingBehindA = (
  queue: WriteQueue<string>,
  attempts: Queue.Queue<readonly [string, number]>,
  gate: Deferred.Deferred<void>,
  items: ReadonlyArray<string>
) =>
  Effect.gen(function* () {
    yield* queue.offer("a")
    yield* Queue.take(attempts)
    for (const item of items) yield* queue.offer(item)
    yield* Deferred.succeed(gate, undefined)
  })

const noAttemptYet = (attempts: Queue.Queue<readonly [string, number]>) =>
  Effect.zipRight(
    settle,
    Effect.map(Queue.size(attempts), (size) => expect(size).toBe(0))
  )

describe("storage write queue", () => {
  it.effect("retries a transient failure with a growing, capped delay, and writes the item once", () =>
    Effect.gen(function* () {
      const times: Array<number> = []
      const { queue, attempts, written } = yield* makeQueue({
        outcome: (_, attempt) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            times.push(now)
            return attempt < 5 ? Effect.fail(transient) : Effect.void
          })
      })
      yield* queue.offer("turn-1")
      expect(yield* Queue.take(attempts)).toEqual(["turn-1", 1])
      // 100 ms, 200 ms, then capped at 300 ms, each ±20 % of jitter.
      for (const [attempt, delay] of [
        [2, 100],
        [3, 200],
        [4, 300],
        [5, 300]
      ] as const) {
        const previous = times.at(-1)!
        yield* TestClock.setTime(previous + delay * 0.8 - 1)
        yield* noAttemptYet(attempts)
        yield* TestClock.setTime(previous + delay * 1.2 + 1)
        expect(yield* Queue.take(attempts)).toEqual(["turn-1", attempt])
      }
      yield* settle
      expect(written).toEqual(["turn-1"])
      expect(yield* queue.pending).toBe(0)
    })
  )

  it.effect("logs an item the database rejects as lost, and goes on with the next", () =>
    Effect.gen(function* () {
      const { queue, attempts, written, settled, logs } = yield* makeQueue({
        outcome: (item) => (item === "bad" ? Effect.fail(permanent) : Effect.void)
      })
      yield* queue.offer("bad")
      yield* queue.offer("good")
      expect(Chunk.toReadonlyArray(yield* Queue.takeN(attempts, 2))).toEqual([
        ["bad", 1],
        ["good", 1]
      ])
      yield* settle
      expect(written).toEqual(["good"])
      expect(settled).toEqual(["bad", "good"])
      expect(logs).toContainEqual({
        message: "Storage: a turn could not be written (rejected by the database: value out of range)",
        item: "bad"
      })
      expect(yield* queue.pending).toBe(0)
    })
  )

  it.effect("writes the items waiting with one writeBatch call, up to maxBatch", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const { queue, attempts, batches, written, settled } = yield* makeQueue({
        outcome: (item) => (item === "a" ? Deferred.await(gate) : Effect.void),
        batch: () => Effect.void,
        maxBatch: 3
      })
      yield* queue.offer("a")
      // Nothing else was waiting: written alone.
      expect(yield* Queue.take(attempts)).toEqual(["a", 1])
      for (const item of ["b", "c", "d", "e"]) yield* queue.offer(item)
      expect(yield* queue.pending).toBe(5)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Queue.take(batches)).toEqual(["b", "c", "d"])
      expect(yield* Queue.take(attempts)).toEqual(["e", 1])
      yield* settle
      expect(yield* Queue.size(batches)).toBe(0)
      expect(yield* Queue.size(attempts)).toBe(0)
      expect(written).toEqual(["a", "b", "c", "d", "e"])
      expect(settled).toEqual(["a", "b", "c", "d", "e"])
      expect(yield* queue.pending).toBe(0)
    })
  )

  it.effect("when a batch fails, writes its items one by one: one the database rejects is lost alone", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const before = yield* failureCounts
      const { queue, attempts, batches, written, settled, logs } = yield* makeQueue({
        outcome: (item) =>
          item === "a" ? Deferred.await(gate) : item === "bad" ? Effect.fail(permanent) : Effect.void,
        // As a database does: one bad turn rejects the whole transaction.
        batch: (items) => (items.includes("bad") ? Effect.fail(permanent) : Effect.void)
      })
      yield* waitingBehindA(queue, attempts, gate, ["b", "bad", "c"])
      expect(yield* Queue.take(batches)).toEqual(["b", "bad", "c"])
      expect(Chunk.toReadonlyArray(yield* Queue.takeN(attempts, 3))).toEqual([
        ["b", 1],
        ["bad", 1],
        ["c", 1]
      ])
      yield* settle
      expect(written).toEqual(["a", "b", "c"])
      expect(settled).toEqual(["a", "b", "bad", "c"])
      expect(logs.filter((line) => line.message.includes("could not be written"))).toEqual([
        { message: "Storage: a turn could not be written (rejected by the database: value out of range)", item: "bad" }
      ])
      // The batch: one warning, one transient failure (its items were retried); then "bad" alone, for good.
      expect(logs.filter((line) => line.message.includes("batch"))).toEqual([
        {
          message: "Storage: writing a batch of 3 turns failed (permanent), writing them one by one: value out of range"
        }
      ])
      const after = yield* failureCounts
      expect({
        transient: after.transient - before.transient,
        permanent: after.permanent - before.permanent,
        lost: after.lost - before.lost
      }).toEqual({ transient: 1, permanent: 1, lost: 1 })
      expect(yield* queue.pending).toBe(0)
    })
  )

  it.effect("when a batch times out, writes its items one by one, retrying each through transient failures", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const timedOut = new WriteFailed({ transient: true, message: "no answer within 5s" })
      const { queue, attempts, batches, written } = yield* makeQueue({
        outcome: (item, attempt) =>
          item === "a" ? Deferred.await(gate) : item === "c" && attempt === 1 ? Effect.fail(transient) : Effect.void,
        batch: () => Effect.fail(timedOut)
      })
      yield* waitingBehindA(queue, attempts, gate, ["b", "c", "d"])
      expect(yield* Queue.take(batches)).toEqual(["b", "c", "d"])
      expect(Chunk.toReadonlyArray(yield* Queue.takeN(attempts, 2))).toEqual([
        ["b", 1],
        ["c", 1]
      ])
      // "d" waits for "c", retried after its backoff: order is kept.
      yield* noAttemptYet(attempts)
      yield* TestClock.adjust("121 millis")
      expect(Chunk.toReadonlyArray(yield* Queue.takeN(attempts, 2))).toEqual([
        ["c", 2],
        ["d", 1]
      ])
      yield* settle
      expect(written).toEqual(["a", "b", "c", "d"])
      expect(yield* queue.pending).toBe(0)
    })
  )

  it.effect("when full, says so and makes offers wait for room", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const { queue, attempts, written } = yield* makeQueue({ outcome: () => Deferred.await(gate) }, 2)
      yield* queue.offer("one")
      yield* Queue.take(attempts) // being written: out of the queue
      yield* queue.offer("two")
      expect(yield* queue.isFull).toBe(false)
      yield* queue.offer("three")
      expect(yield* queue.isFull).toBe(true)
      const waiting = yield* Effect.fork(queue.offer("four"))
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      expect(yield* queue.pending).toBe(4)

      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(waiting)
      yield* settle
      expect(written).toEqual(["one", "two", "three", "four"])
      expect(yield* queue.isFull).toBe(false)
    })
  )

  it.effect("on shutdown, writes what is queued before closing", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const { queue, written, logs, scope } = yield* makeQueue({ outcome: () => Deferred.await(gate) })
      for (const item of ["a", "b", "c"]) yield* queue.offer(item)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* settle
      expect(Option.isNone(yield* Fiber.poll(closing))).toBe(true)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      expect(written).toEqual(["a", "b", "c"])
      expect(logs.filter((line) => line.message.includes("could not be written"))).toEqual([])
    })
  )

  it.effect("on shutdown, gives up after the flush timeout and logs each item left unwritten", () =>
    Effect.gen(function* () {
      const { queue, attempts, written, logs, scope } = yield* makeQueue({ outcome: () => Effect.fail(transient) })
      for (const item of ["a", "b", "c"]) yield* queue.offer(item)
      yield* Queue.take(attempts)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("999 millis")
      expect(Option.isNone(yield* Fiber.poll(closing))).toBe(true)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
      expect(written).toEqual([])
      const lost = logs.filter((line) => line.message.startsWith("Storage: a turn could not be written"))
      expect(lost.map((line) => line.item)).toEqual(["a", "b", "c"])
      expect(logs.map((line) => line.message)).toContain("Storage: shutting down with 3 turn(s) unwritten after 1s")
    })
  )

  it.effect("on shutdown with a batch being written, logs each of its items, and those still queued, as lost", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const { queue, attempts, batches, written, settled, logs, scope } = yield* makeQueue({
        outcome: () => Deferred.await(gate),
        // A batch whose transaction never answers.
        batch: () => Effect.never
      })
      yield* waitingBehindA(queue, attempts, gate, ["b", "c", "d"])
      expect(yield* Queue.take(batches)).toEqual(["b", "c", "d"])
      yield* queue.offer("e")
      expect(yield* queue.pending).toBe(4)

      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      expect(written).toEqual(["a"])
      expect(logs.filter((line) => line.message.startsWith("Storage: a turn could not be written"))).toEqual([
        ...["b", "c", "d"].map((item) => ({
          message: "Storage: a turn could not be written (being written at shutdown: it may or may not have been)",
          item
        })),
        { message: "Storage: a turn could not be written (still queued at shutdown)", item: "e" }
      ])
      expect(logs.map((line) => line.message)).toContain("Storage: shutting down with 4 turn(s) unwritten after 1s")
      expect(settled).toEqual(["a", "b", "c", "d", "e"])
      expect(yield* queue.pending).toBe(0)
    })
  )

  it.effect("on shutdown while a failed batch is written one by one, logs only the items not yet written", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const { queue, attempts, batches, written, logs, scope } = yield* makeQueue({
        outcome: (item) => (item === "a" ? Deferred.await(gate) : item === "c" ? Effect.fail(transient) : Effect.void),
        batch: () => Effect.fail(transient)
      })
      yield* waitingBehindA(queue, attempts, gate, ["b", "c", "d"])
      yield* Queue.take(batches)
      expect(Chunk.toReadonlyArray(yield* Queue.takeN(attempts, 2))).toEqual([
        ["b", 1],
        ["c", 1]
      ])

      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      expect(written).toEqual(["a", "b"])
      const lost = logs.filter((line) => line.message.startsWith("Storage: a turn could not be written"))
      expect(lost.map((line) => line.item)).toEqual(["c", "d"])
      expect(logs.map((line) => line.message)).toContain("Storage: shutting down with 2 turn(s) unwritten after 1s")
      expect(yield* queue.pending).toBe(0)
    })
  )
})
