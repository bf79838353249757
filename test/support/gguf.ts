/**
 * A tiny llama-architecture model, written as a GGUF (v3) file with seeded random F32 weights, so that the `llama`
 * backend is tested with a real llama.cpp and a real model file, offline and in about a second.
 *
 * The vocabulary is SentencePiece-like with byte fallback (any text tokenizes): `<unk>`, `<s>`, `</s>`, `[INST]`,
 * `[/INST]`, the 256 byte tokens, then printable ASCII pieces (space as `▁`) and a few merged pieces. The output
 * layer only ever favours the printable pieces (the rows of control and byte tokens are zero), so the model writes
 * ASCII gibberish and never ends by itself: a generation runs until its token limit or a stop sequence. The chat
 * template is Mistral's v0.3 format, simplified.
 */
import { writeFileSync } from "node:fs"

/** Mistral-7B-Instruct-v0.3's template, shortened: the system prompt goes before the last user message. */
export const TINY_CHAT_TEMPLATE =
  "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}" +
  "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}" +
  "{{- bos_token }}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}" +
  "{%- if loop.last and system_message is defined %}{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}" +
  "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}" +
  "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}{%- endif %}{%- endfor %}"

export interface TinyModelOptions {
  readonly seed?: number
  readonly name?: string
  readonly contextLength?: number
  readonly embedding?: number
  readonly layers?: number
  readonly heads?: number
  readonly feedForward?: number
}

// --- Vocabulary ------------------------------------------------------------------------------------------------

const TOKEN_NORMAL = 1
const TOKEN_UNKNOWN = 2
const TOKEN_CONTROL = 3
const TOKEN_BYTE = 6

interface Vocabulary {
  readonly tokens: ReadonlyArray<string>
  readonly scores: ReadonlyArray<number>
  readonly types: ReadonlyArray<number>
}

const vocabulary = (): Vocabulary => {
  const tokens: Array<string> = []
  const scores: Array<number> = []
  const types: Array<number> = []
  const add = (token: string, type: number, score = 0) => {
    tokens.push(token)
    types.push(type)
    scores.push(score)
  }
  add("<unk>", TOKEN_UNKNOWN)
  add("<s>", TOKEN_CONTROL)
  add("</s>", TOKEN_CONTROL)
  add("[INST]", TOKEN_CONTROL)
  add("[/INST]", TOKEN_CONTROL)
  for (let byte = 0; byte < 256; byte++) {
    add(`<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`, TOKEN_BYTE)
  }
  // Single characters first, then merged pieces; SentencePiece merges pieces with higher scores first.
  for (let code = 33; code < 127; code++) add(String.fromCharCode(code), TOKEN_NORMAL, -1000 - code)
  add("▁", TOKEN_NORMAL, -900)
  const pieces = ["▁t", "he", "▁the", "▁a", "in", "er", "on", "▁I", "an", "re", "▁you", "▁Hello", "ll", "o!", "▁is"]
  pieces.forEach((piece, index) => add(piece, TOKEN_NORMAL, -100 - index))
  return { tokens, scores, types }
}

// --- Weights -----------------------------------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG, so that the same seed gives the same model. */
const prng = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Tensor {
  readonly name: string
  /** `ne`: the innermost dimension first, as GGUF stores it. */
  readonly dims: ReadonlyArray<number>
  readonly data: Float32Array
}

// --- GGUF encoding -----------------------------------------------------------------------------------------------

const GGUF_MAGIC = 0x46554747 // "GGUF", little-endian
const GGUF_VERSION = 3
const ALIGNMENT = 32
const GGML_TYPE_F32 = 0

enum ValueType {
  UInt32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9
}

type Value =
  | { readonly type: ValueType.UInt32 | ValueType.Int32 | ValueType.Float32; readonly value: number }
  | { readonly type: ValueType.Bool; readonly value: boolean }
  | { readonly type: ValueType.String; readonly value: string }
  | {
      readonly type: ValueType.Array
      readonly items: ValueType.Int32 | ValueType.Float32 | ValueType.String
      readonly value: ReadonlyArray<number> | ReadonlyArray<string>
    }

class Writer {
  private chunks: Array<Buffer> = []
  length = 0
  private push(buffer: Buffer) {
    this.chunks.push(buffer)
    this.length += buffer.length
  }
  u32(value: number) {
    const buffer = Buffer.alloc(4)
    buffer.writeUInt32LE(value)
    this.push(buffer)
  }
  i32(value: number) {
    const buffer = Buffer.alloc(4)
    buffer.writeInt32LE(value)
    this.push(buffer)
  }
  u64(value: number) {
    const buffer = Buffer.alloc(8)
    buffer.writeBigUInt64LE(BigInt(value))
    this.push(buffer)
  }
  f32(value: number) {
    const buffer = Buffer.alloc(4)
    buffer.writeFloatLE(value)
    this.push(buffer)
  }
  string(value: string) {
    const bytes = Buffer.from(value, "utf8")
    this.u64(bytes.length)
    this.push(bytes)
  }
  bytes(buffer: Buffer) {
    this.push(buffer)
  }
  pad() {
    const padding = (ALIGNMENT - (this.length % ALIGNMENT)) % ALIGNMENT
    if (padding > 0) this.push(Buffer.alloc(padding))
  }
  value(value: Value) {
    this.u32(value.type)
    this.payload(value)
  }
  private payload(value: Value) {
    switch (value.type) {
      case ValueType.UInt32:
        return this.u32(value.value)
      case ValueType.Int32:
        return this.i32(value.value)
      case ValueType.Float32:
        return this.f32(value.value)
      case ValueType.Bool:
        return this.bytes(Buffer.from([value.value ? 1 : 0]))
      case ValueType.String:
        return this.string(value.value)
      case ValueType.Array: {
        this.u32(value.items)
        this.u64(value.value.length)
        for (const item of value.value) {
          if (value.items === ValueType.String) this.string(item as string)
          else if (value.items === ValueType.Int32) this.i32(item as number)
          else this.f32(item as number)
        }
        return
      }
    }
  }
  toBuffer() {
    return Buffer.concat(this.chunks)
  }
}

const u32 = (value: number): Value => ({ type: ValueType.UInt32, value })
const f32 = (value: number): Value => ({ type: ValueType.Float32, value })
const str = (value: string): Value => ({ type: ValueType.String, value })

/** The bytes of a tiny llama GGUF model; the same options always give the same bytes. */
export const tinyLlamaGguf = (options: TinyModelOptions = {}): Buffer => {
  const seed = options.seed ?? 42
  const embedding = options.embedding ?? 64
  const layers = options.layers ?? 2
  const heads = options.heads ?? 4
  const feedForward = options.feedForward ?? 128
  const contextLength = options.contextLength ?? 4096
  const vocab = vocabulary()
  const vocabSize = vocab.tokens.length
  const random = prng(seed)
  const gaussian = () => {
    // Box-Muller; 1 - random() keeps the logarithm finite.
    const u = 1 - random()
    const v = random()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
  }
  const matrix = (name: string, inner: number, outer: number, scale = 1 / Math.sqrt(inner)): Tensor => {
    const data = new Float32Array(inner * outer)
    for (let i = 0; i < data.length; i++) data[i] = gaussian() * scale
    return { name, dims: [inner, outer], data }
  }
  const ones = (name: string, size: number): Tensor => ({ name, dims: [size], data: new Float32Array(size).fill(1) })

  const output = matrix("output.weight", embedding, vocabSize, 4 / Math.sqrt(embedding))
  // Only printable pieces can win: zero rows for <unk>, control and byte tokens (and so for </s>).
  vocab.types.forEach((type, id) => {
    if (type !== TOKEN_NORMAL) output.data.fill(0, id * embedding, (id + 1) * embedding)
  })
  const tensors: Array<Tensor> = [
    matrix("token_embd.weight", embedding, vocabSize, 1),
    ones("output_norm.weight", embedding),
    output
  ]
  for (let layer = 0; layer < layers; layer++) {
    const block = `blk.${layer}`
    tensors.push(
      ones(`${block}.attn_norm.weight`, embedding),
      matrix(`${block}.attn_q.weight`, embedding, embedding),
      matrix(`${block}.attn_k.weight`, embedding, embedding),
      matrix(`${block}.attn_v.weight`, embedding, embedding),
      matrix(`${block}.attn_output.weight`, embedding, embedding),
      ones(`${block}.ffn_norm.weight`, embedding),
      matrix(`${block}.ffn_gate.weight`, embedding, feedForward),
      matrix(`${block}.ffn_up.weight`, embedding, feedForward),
      matrix(`${block}.ffn_down.weight`, feedForward, embedding)
    )
  }

  const metadata: ReadonlyArray<readonly [string, Value]> = [
    ["general.architecture", str("llama")],
    ["general.name", str(options.name ?? "tiny-llama")],
    ["general.alignment", u32(ALIGNMENT)],
    ["llama.context_length", u32(contextLength)],
    ["llama.embedding_length", u32(embedding)],
    ["llama.block_count", u32(layers)],
    ["llama.feed_forward_length", u32(feedForward)],
    ["llama.rope.dimension_count", u32(embedding / heads)],
    ["llama.attention.head_count", u32(heads)],
    ["llama.attention.head_count_kv", u32(heads)],
    ["llama.attention.layer_norm_rms_epsilon", f32(1e-5)],
    ["llama.rope.freq_base", f32(10000)],
    ["tokenizer.ggml.model", str("llama")],
    ["tokenizer.ggml.tokens", { type: ValueType.Array, items: ValueType.String, value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: ValueType.Array, items: ValueType.Float32, value: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: ValueType.Array, items: ValueType.Int32, value: vocab.types }],
    ["tokenizer.ggml.unknown_token_id", u32(0)],
    ["tokenizer.ggml.bos_token_id", u32(1)],
    ["tokenizer.ggml.eos_token_id", u32(2)],
    ["tokenizer.ggml.add_bos_token", { type: ValueType.Bool, value: true }],
    ["tokenizer.ggml.add_eos_token", { type: ValueType.Bool, value: false }],
    ["tokenizer.chat_template", str(TINY_CHAT_TEMPLATE)]
  ]

  const header = new Writer()
  header.u32(GGUF_MAGIC)
  header.u32(GGUF_VERSION)
  header.u64(tensors.length)
  header.u64(metadata.length)
  for (const [key, value] of metadata) {
    header.string(key)
    header.value(value)
  }
  let offset = 0
  for (const tensor of tensors) {
    header.string(tensor.name)
    header.u32(tensor.dims.length)
    for (const dim of tensor.dims) header.u64(dim)
    header.u32(GGML_TYPE_F32)
    header.u64(offset)
    const size = tensor.data.byteLength
    offset += size + ((ALIGNMENT - (size % ALIGNMENT)) % ALIGNMENT)
  }
  header.pad()
  for (const tensor of tensors) {
    header.bytes(Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength))
    header.pad()
  }
  return header.toBuffer()
}

/** Writes the tiny model to `path` (a `.gguf` file) and returns the path. */
export const writeTinyLlama = (path: string, options: TinyModelOptions = {}): string => {
  writeFileSync(path, tinyLlamaGguf(options))
  return path
}
