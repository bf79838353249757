/**
 * The development generator: no model, no GPU. It answers with a deterministic reply built from the user's last
 * message, streamed word by word with a small delay, so that every client path (streaming, interruption, token
 * accounting) can be exercised. Its tokens are its own: one per word piece it streams.
 */
import { Effect, Layer, Option, Schedule, Stream } from "effect"
import { AppConfig } from "../AppConfig.js"
import { GenerationChunk, type GenerationRequest, Generator } from "../Generator.js"

export const ECHO_MODEL = "echo"

/** Word pieces with their leading white space, so that joining them gives back the text. */
export const echoTokens = (text: string): ReadonlyArray<string> => text.match(/\s*\S+/g) ?? []

export const echoReply = (request: GenerationRequest): string => {
  const lastUser = [...request.messages].reverse().find((message) => message.role === "user")
  const said = lastUser?.content.trim() ?? ""
  return `You said: ${said}\n\n(This is Nexxi's echo generator: no model is configured.)`
}

/** The reply cut at the first stop sequence or at `maxNewTokens`, with the reason, as a model server would. */
const plan = (request: GenerationRequest) => {
  const tokens: Array<string> = []
  let text = ""
  for (const token of echoTokens(echoReply(request))) {
    if (tokens.length === request.maxNewTokens) return { tokens, finishReason: "length" as const }
    const stopAt = (request.stop ?? []).map((stop) => (text + token).indexOf(stop)).find((index) => index >= 0)
    if (stopAt !== undefined) {
      const kept = (text + token).slice(text.length, stopAt)
      if (kept.length > 0) tokens.push(kept)
      return { tokens, finishReason: "stop" as const }
    }
    tokens.push(token)
    text += token
  }
  return { tokens, finishReason: "eos" as const }
}

export const makeEcho = (tokenDelayMs: number) =>
  Generator.make({
    info: Effect.succeed({ modelId: ECHO_MODEL, maxInputTokens: Option.none(), maxTotalTokens: Option.none() }),
    readiness: Effect.succeed({ status: "embedded", kind: ECHO_MODEL, detail: "development generator, no model" }),
    stream: (request) =>
      Stream.suspend(() => {
        const { tokens, finishReason } = plan(request)
        const promptTokens = request.messages.reduce((sum, message) => sum + echoTokens(message.content).length, 0)
        const paced = Stream.fromIterable(tokens).pipe(
          tokenDelayMs > 0 ? Stream.schedule(Schedule.spaced(tokenDelayMs)) : (stream) => stream
        )
        return Stream.concat(
          Stream.map(paced, (text) => GenerationChunk.Token({ text })),
          Stream.succeed(GenerationChunk.Completed({ finishReason, promptTokens, completionTokens: tokens.length }))
        )
      })
  })

export const EchoGenerator = Layer.effect(
  Generator,
  Effect.map(AppConfig, (config) => makeEcho(config.echoTokenDelayMs))
)
