/**
 * Generator: turns a prompt (chat messages) into a stream of tokens. Backends live in `Generator/`; every one
 * reports tokens as the model server counted them and ends its stream with a `Completed` record.
 */
import { Chunk, Context, Data, Effect, Layer, Option, type Scope, Stream } from "effect"
import { ClientError, retryAfter } from "./Domain/Errors.js"
import type { DependencyHealth } from "./Domain/Health.js"
import type { Role } from "./Domain/Session.js"

export interface PromptMessage {
  readonly role: Role
  readonly content: string
}

export interface GenerationRequest {
  readonly messages: ReadonlyArray<PromptMessage>
  readonly maxNewTokens: number
  readonly temperature?: number
  readonly topP?: number
  readonly stop?: ReadonlyArray<string>
  readonly seed?: number
}

export type FinishReason = "length" | "eos" | "stop" | "interrupted"

export type GenerationChunk = Data.TaggedEnum<{
  Token: { readonly text: string }
  Completed: {
    readonly finishReason: FinishReason
    readonly promptTokens: number
    readonly completionTokens: number
  }
}>
export const GenerationChunk = Data.taggedEnum<GenerationChunk>()
export type Completed = Extract<GenerationChunk, { _tag: "Completed" }>

export interface Generation {
  readonly text: string
  readonly completion: Completed
}

export interface ModelInfo {
  /** The name clients see in responses (`model`). */
  readonly modelId: string
  /** Context limits when the backend knows them (TGI's `/info`). */
  readonly maxInputTokens: Option.Option<number>
  readonly maxTotalTokens: Option.Option<number>
}

// Errors a client can see. Retries, timeouts and the circuit breaker of real backends decide which one.

export class GeneratorUnavailable extends ClientError<GeneratorUnavailable>()(
  "GeneratorUnavailable",
  503,
  "The model server cannot be reached or is overloaded",
  retryAfter
) {}

export class InputTooLong extends ClientError<InputTooLong>()(
  "InputTooLong",
  422,
  "The conversation does not fit the model's context"
) {}

export class GeneratorTimeout extends ClientError<GeneratorTimeout>()(
  "GeneratorTimeout",
  504,
  "The model server did not answer in time"
) {}

export class GeneratorFailed extends ClientError<GeneratorFailed>()(
  "GeneratorFailed",
  502,
  "The model server failed to generate"
) {}

export type GeneratorError = GeneratorUnavailable | InputTooLong | GeneratorTimeout | GeneratorFailed
export const GeneratorErrors = [GeneratorUnavailable, InputTooLong, GeneratorTimeout, GeneratorFailed] as const

/**
 * The next tokens of an open generation, as many as are ready; fails with `None` once it has ended (after its
 * `Completed`), or with `Some(error)`.
 */
export type GenerationPull = Effect.Effect<Chunk.Chunk<GenerationChunk>, Option.Option<GeneratorError>>

export interface GeneratorShape {
  readonly info: Effect.Effect<ModelInfo, GeneratorError>
  /** Tokens as they are produced, then one `Completed`. Interrupting the stream stops generation upstream. */
  readonly stream: (request: GenerationRequest) => Stream.Stream<GenerationChunk, GeneratorError>
  /**
   * The same generation, pulled by the caller until its scope closes (which stops it upstream). A chat turn drives
   * its generation this way: a stream costs a channel and a fiber's worth of set-up per turn, a pull costs nothing.
   */
  readonly open: (request: GenerationRequest) => Effect.Effect<GenerationPull, never, Scope.Scope>
  readonly generate: (request: GenerationRequest) => Effect.Effect<Generation, GeneratorError>
  readonly readiness: Effect.Effect<DependencyHealth>
}

/** A pull whose first answer is `first` (already pulled), and `pull`'s after that. */
export const startingWith = <A, E, R>(
  first: Chunk.Chunk<A>,
  pull: Effect.Effect<Chunk.Chunk<A>, E, R>
): Effect.Effect<Chunk.Chunk<A>, E, R> => {
  let pending: Chunk.Chunk<A> | undefined = first
  return Effect.suspend(() => {
    if (pending === undefined) return pull
    const chunk = pending
    pending = undefined
    return Effect.succeed(chunk)
  })
}

/** A pull's next chunk, or `None` once it has ended; its errors unwrapped. */
export const nextOf = <A, E, R>(
  pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<E>, R>
): Effect.Effect<Option.Option<Chunk.Chunk<A>>, E, R> =>
  pull.pipe(
    Effect.map(Option.some),
    Effect.catchAll(Option.match({ onNone: () => Effect.succeedNone, onSome: Effect.fail }))
  )

/** A generation stream made of its pulls: one channel, however many layers built the pull. */
export const streamOfPulls = <E>(
  open: Effect.Effect<Effect.Effect<Chunk.Chunk<GenerationChunk>, Option.Option<E>>, never, Scope.Scope>
): Stream.Stream<GenerationChunk, E> => Stream.unwrapScoped(Effect.map(open, Stream.repeatEffectChunkOption))

/** Collects a generation stream into the whole reply (for non-streaming callers). */
export const collect = <E>(stream: Stream.Stream<GenerationChunk, E>): Effect.Effect<Generation, E> =>
  Stream.runCollect(stream).pipe(
    Effect.map((chunks) => {
      let text = ""
      let completion: Completed = GenerationChunk.Completed({
        finishReason: "interrupted",
        promptTokens: 0,
        completionTokens: 0
      })
      for (const chunk of Chunk.toReadonlyArray(chunks)) {
        if (chunk._tag === "Token") text += chunk.text
        else completion = chunk
      }
      return { text, completion }
    })
  )

export class Generator extends Context.Tag("nexxi/Generator")<Generator, GeneratorShape>() {
  /**
   * Builds a generator from its essentials: a backend gives its generation as a stream or as pulls (`open`), and
   * the other form, and `generate`, are derived from it.
   */
  static readonly make = (
    options: {
      readonly info: Effect.Effect<ModelInfo, GeneratorError>
      readonly readiness: Effect.Effect<DependencyHealth>
    } & (
      | { readonly stream: GeneratorShape["stream"]; readonly open?: undefined }
      | { readonly open: GeneratorShape["open"]; readonly stream?: undefined }
    )
  ): GeneratorShape => {
    const stream: GeneratorShape["stream"] = options.stream ?? ((request) => streamOfPulls(options.open!(request)))
    const open: GeneratorShape["open"] = options.open ?? ((request) => Stream.toPull(options.stream!(request)))
    return {
      info: options.info,
      readiness: options.readiness,
      stream,
      open,
      generate: (request) => collect(stream(request))
    }
  }

  /** A generator whose replies the test scripts, e.g. to record prompts or observe interruption. */
  static readonly Test = (
    stream: (request: GenerationRequest) => Stream.Stream<GenerationChunk, GeneratorError>,
    modelId = "test-model"
  ): Layer.Layer<Generator> =>
    Layer.succeed(
      Generator,
      Generator.make({
        info: Effect.succeed({ modelId, maxInputTokens: Option.none(), maxTotalTokens: Option.none() }),
        stream,
        readiness: Effect.succeed({ status: "up", kind: "test" })
      })
    )
}
