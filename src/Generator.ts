/**
 * Generator: turns a prompt (chat messages) into a stream of tokens. Backends live in `Generator/`; every one
 * reports tokens as the model server counted them and ends its stream with a `Completed` record.
 */
import { Chunk, Context, Data, Effect, Layer, Option, Stream } from "effect"
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

export interface GeneratorShape {
  readonly info: Effect.Effect<ModelInfo, GeneratorError>
  /** Tokens as they are produced, then one `Completed`. Interrupting the stream stops generation upstream. */
  readonly stream: (request: GenerationRequest) => Stream.Stream<GenerationChunk, GeneratorError>
  readonly generate: (request: GenerationRequest) => Effect.Effect<Generation, GeneratorError>
  readonly readiness: Effect.Effect<DependencyHealth>
}

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
  /** Builds a generator from its two essentials; `generate` is derived from `stream`. */
  static readonly make = (options: {
    readonly info: Effect.Effect<ModelInfo, GeneratorError>
    readonly stream: (request: GenerationRequest) => Stream.Stream<GenerationChunk, GeneratorError>
    readonly readiness: Effect.Effect<DependencyHealth>
  }): GeneratorShape => ({ ...options, generate: (request) => collect(options.stream(request)) })

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
