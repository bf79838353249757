/** Generators for tests: scripted replies, recorded prompts, and replies a test releases token by token. */
import { Deferred, Effect, type Layer, Queue, Stream } from "effect"
import { GenerationChunk, type GenerationRequest, Generator, type GeneratorError } from "../../src/Generator.js"

export const tokens = (texts: ReadonlyArray<string>, promptTokens = 7) =>
  Stream.concat(
    Stream.fromIterable(texts.map((text) => GenerationChunk.Token({ text }))),
    Stream.succeed(GenerationChunk.Completed({ finishReason: "eos", promptTokens, completionTokens: texts.length }))
  )

/** Replies with fixed tokens and records every request it receives. */
export const recordingGenerator = (texts: ReadonlyArray<string>, promptTokens = 7) => {
  const requests: Array<GenerationRequest> = []
  const layer = Generator.Test((request) => {
    requests.push(request)
    return tokens(texts, promptTokens)
  })
  return { layer, requests }
}

export const failingGenerator = (error: GeneratorError) => Generator.Test(() => Stream.fail(error))

/**
 * A generator whose tokens the test releases one at a time (`emit`), and which reports when its stream is
 * stopped before its end (the client went away) — so tests can see that events arrive as they are produced.
 */
export const makeGatedGenerator = Effect.gen(function* () {
  const queue = yield* Queue.unbounded<Effect.Effect<GenerationChunk, GeneratorError>>()
  const interrupted = yield* Deferred.make<void>()
  const started = yield* Deferred.make<GenerationRequest>()
  let completed = false
  const stream = (request: GenerationRequest) =>
    Stream.fromQueue(queue).pipe(
      Stream.mapEffect((next) => next),
      Stream.takeUntil((chunk) => chunk._tag === "Completed"),
      Stream.onStart(Deferred.succeed(started, request)),
      Stream.tap((chunk) => Effect.sync(() => (completed ||= chunk._tag === "Completed"))),
      // Stopped before its last token: the consumer went away (the client disconnected, or shutdown).
      Stream.ensuring(Effect.suspend(() => (completed ? Effect.void : Deferred.succeed(interrupted, undefined))))
    )
  return {
    layer: Generator.Test(stream) as Layer.Layer<Generator>,
    emit: (text: string) => Queue.offer(queue, Effect.succeed(GenerationChunk.Token({ text }))),
    complete: (completionTokens: number, promptTokens = 5) =>
      Queue.offer(
        queue,
        Effect.succeed(GenerationChunk.Completed({ finishReason: "eos", promptTokens, completionTokens }))
      ),
    fail: (error: GeneratorError) => Queue.offer(queue, Effect.fail(error)),
    started: Deferred.await(started),
    interrupted: Deferred.await(interrupted)
  }
})
