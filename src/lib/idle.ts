/**
 * Something to do when a stream goes quiet — a keep-alive comment, or an idle-timeout failure — at the cost of one
 * fiber per stream rather than one timer race per element. (Racing every pull against a timer, as
 * `Effect.timeout`, `Stream.merge` or `Stream.interruptWhen` do, forks fibers for each element: tens of
 * microseconds per token, which is most of what relaying a token would cost.)
 *
 * The stream runs in a fiber of its own that feeds a bounded queue (it waits when the reader is behind); the
 * reader takes whatever has arrived as one chunk. A watchdog fiber on the Effect clock (so the TestClock drives it
 * in tests) puts `whenIdle()` into the queue each time nothing has arrived for `idleMs`.
 */
import { Effect, Exit, Queue, Stream, Take } from "effect"

/** Chunks the reader may fall behind by before the stream's fiber waits. */
const CAPACITY = 64

export const onIdle = <A, E, R>(
  stream: Stream.Stream<A, E, R>,
  idleMs: number,
  whenIdle: () => Take.Take<A, E>
): Stream.Stream<A, E, R> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const clock = yield* Effect.clock
      const queue = yield* Effect.acquireRelease(Queue.bounded<Take.Take<A, E>>(CAPACITY), Queue.shutdown)
      let lastActivity = clock.unsafeCurrentTimeMillis()
      yield* stream.pipe(
        Stream.runForEachChunk((chunk) =>
          Effect.suspend(() => {
            lastActivity = clock.unsafeCurrentTimeMillis()
            return Queue.offer(queue, Take.chunk(chunk))
          })
        ),
        Effect.exit,
        Effect.flatMap((exit) =>
          Queue.offer(queue, Exit.match(exit, { onFailure: Take.failCause, onSuccess: () => Take.end }))
        ),
        Effect.forkScoped
      )
      const watchdog: Effect.Effect<never> = Effect.suspend(() => {
        const quietFor = clock.unsafeCurrentTimeMillis() - lastActivity
        if (quietFor < idleMs) return Effect.zipRight(Effect.sleep(idleMs - quietFor), watchdog)
        lastActivity = clock.unsafeCurrentTimeMillis()
        return Effect.zipRight(Queue.offer(queue, whenIdle()), watchdog)
      })
      yield* Effect.forkScoped(watchdog)
      return Stream.fromQueue(queue).pipe(Stream.flattenTake)
    })
  )
