/**
 * Payload smuggling: instructions hidden in an encoding the model can read but a filter would not. The encoded runs
 * of a message are decoded and scanned like the message itself — base64 (and base64url), hex (plain, `\x41`,
 * `0x41`), 8-bit binary, percent-encoding, HTML character references, Unicode tag characters ("ASCII smuggling"),
 * Morse code, payloads split into quoted parts ("part 1 ... part 2", "a + b"), and — for text that reads like no
 * language, or says it is ciphered — ROT13 and other Caesar shifts, reversal and Pig Latin.
 *
 * Decoding is bounded (`DecodeBudget`): at most a few payloads and a few kilobytes of decoded text per message, and
 * one level of nesting, so a message made of nothing but encoded runs costs a fixed amount of extra work.
 */

import { foldedAnchors, ledPattern, matchesIn, type Occurrences } from "./Anchors.js"

export type Encoding =
  | "base64"
  | "hex"
  | "binary"
  | "percent"
  | "html_entities"
  | "unicode_tags"
  | "rot13"
  | "caesar"
  | "morse"
  | "reversed"
  | "pig_latin"
  | "split"

export interface DecodedPayload {
  readonly encoding: Encoding
  readonly text: string
}

export interface DecodeBudget {
  /** Most payloads decoded per message. */
  readonly maxPayloads: number
  /** Most characters of decoded text per message, over all payloads. */
  readonly maxChars: number
}

export const defaultDecodeBudget: DecodeBudget = { maxPayloads: 8, maxChars: 8192 }

// Each candidate pattern is one character class repeated (or a fixed-width group repeated), so a failed match
// costs at most the length of the run it stopped in: linear overall.
// Encoded runs are found by one pass over the character codes (`encodedRuns`); the patterns below then only look
// inside those runs. Each repeats one fixed-width group, so a failed match costs at most the run's length.
const BASE64_RUN = /[A-Za-z0-9+/_-]{20,}={0,2}/g
const HEX_RUN = /(?:[0-9a-fA-F]{2}[ :]?){10,}/g
const ESCAPED_HEX_RUN = /(?:(?:\\x|0x)[0-9a-fA-F]{2}[ ,]?){6,}/g
const BINARY_RUN = /(?:[01]{8} ?){4,}/g
const PERCENT_BYTE = /%[0-9a-fA-F]{2}/g
const HTML_REFERENCE = /&#(?:x([0-9a-fA-F]{1,6})|([0-9]{1,7}));/g
const TAG_RUN = /(?:\uDB40[\uDC00-\uDC7F])+/g
const WORD = /[a-z]+/g

/** Character classes of the encodings: 1 base64 (and base64url), 2 hex digit, 4 separator inside hex ("de ad", "\\x41"). */
const ENCODING_CLASS = new Uint8Array(128)
for (let code = 0; code < 128; code++) {
  const char = String.fromCharCode(code)
  if (/[A-Za-z0-9+/_=-]/.test(char)) ENCODING_CLASS[code]! |= 1
  if (/[0-9a-fA-F]/.test(char)) ENCODING_CLASS[code]! |= 2
  if (/[ :,\\xX]/.test(char)) ENCODING_CLASS[code]! |= 4
}

const inClass = (text: string, index: number, mask: number) => {
  const code = text.charCodeAt(index)
  return code < 128 && (ENCODING_CLASS[code]! & mask) !== 0
}

/**
 * The maximal stretches of characters of class `mask` at least `min` long, as start and end pairs into `into`. A
 * stretch that long fills every window of `min` characters it starts: each window is read from its end backwards,
 * and the search jumps past the first character outside the class, so ordinary prose is mostly skipped. Characters
 * already known to be in the class are not read again: linear.
 */
const stretches = (text: string, mask: number, min: number, into: Array<number>) => {
  let start = 0
  // [start, known) is known to be in the class.
  let known = 0
  while (start + min <= text.length) {
    let index = start + min - 1
    while (index >= known && inClass(text, index, mask)) index--
    if (index >= known) {
      known = start + min
      start = index + 1
      continue
    }
    let end = start + min
    while (end < text.length && inClass(text, end, mask)) end++
    into.push(start, end)
    start = end + 1
    known = start
  }
}

/**
 * Stretches of at least 20 base64 characters, or of hex digits and separators holding at least 12 hex digits, in
 * the order of their ends (base64 first); a hex stretch equal to the run just before it is not repeated.
 */
const encodedRuns = (text: string): Array<string> => {
  const base64: Array<number> = []
  stretches(text, 1, 20, base64)
  const hex: Array<number> = []
  stretches(text, 6, 12, hex)
  const runs: Array<string> = []
  let b = 0
  for (let h = 0; h < hex.length; h += 2) {
    const [start, end] = [hex[h]!, hex[h + 1]!]
    let digits = 0
    for (let index = start; index < end && digits < 12; index++) if (inClass(text, index, 2)) digits++
    if (digits < 12) continue
    for (; b < base64.length && base64[b + 1]! <= end; b += 2) runs.push(text.slice(base64[b], base64[b + 1]))
    const run = text.slice(start, end)
    if (runs.at(-1) !== run) runs.push(run)
  }
  for (; b < base64.length; b += 2) runs.push(text.slice(base64[b], base64[b + 1]))
  return runs
}

/** Share of printable characters a decoded payload needs to count as text rather than binary noise. */
const MIN_PRINTABLE = 0.9

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Decoded bytes as text, or `undefined` when they are not mostly printable UTF-8 with some letters. */
const asText = (bytes: Uint8Array): string | undefined => {
  if (bytes.length < 6) return undefined
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return undefined
  }
  let printable = 0
  let letters = 0
  for (const char of text) {
    const code = char.codePointAt(0)!
    if (code >= 0x20 || code === 0x0a || code === 0x0d || code === 0x09) printable++
    if (/\p{L}/u.test(char)) letters++
  }
  const length = [...text].length
  return printable / length >= MIN_PRINTABLE && letters / length >= 0.5 ? text : undefined
}

const decodeBase64 = (run: string): string | undefined => {
  // All-hex or all-letter runs are hex or plain long words, not base64.
  if (/^[0-9a-fA-F]+$/.test(run) || /^[A-Za-z]+$/.test(run)) return undefined
  const standard = run.replace(/-/g, "+").replace(/_/g, "/")
  return asText(Buffer.from(standard, "base64"))
}

const decodeHex = (run: string): string | undefined => {
  const digits = run.replace(/\\x|0x|[^0-9a-fA-F]/g, "")
  return digits.length % 2 === 0 ? asText(Buffer.from(digits, "hex")) : undefined
}

const decodeBinary = (run: string): string | undefined => {
  const bytes = run.match(/[01]{8}/g) ?? []
  return asText(Uint8Array.from(bytes, (byte) => parseInt(byte, 2)))
}

const decodePercent = (text: string): string | undefined => {
  const bytes: Array<number> = []
  let index = 0
  while (index < text.length) {
    const hex = text[index] === "%" ? text.slice(index + 1, index + 3) : ""
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16))
      index += 3
    } else {
      const code = text.charCodeAt(index)
      if (code > 0x7f) return undefined
      bytes.push(code)
      index++
    }
  }
  return asText(Uint8Array.from(bytes))
}

const decodeHtmlReferences = (text: string): string =>
  text.replace(HTML_REFERENCE, (reference, hex: string | undefined, decimal: string | undefined) => {
    const code = hex !== undefined ? parseInt(hex, 16) : Number(decimal)
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : reference
  })

/** Unicode tag characters U+E0020-E007E mirror ASCII; emoji subdivision flags (🏴 + tags) are the one honest use. */
const decodeTags = (text: string): ReadonlyArray<string> => {
  const found: Array<string> = []
  if (!text.includes("\uDB40")) return found
  TAG_RUN.lastIndex = 0
  for (let match = TAG_RUN.exec(text); match !== null; match = TAG_RUN.exec(text)) {
    if (text.codePointAt(match.index - 2) === 0x1f3f4) continue
    let ascii = ""
    for (const char of match[0]) {
      const code = char.codePointAt(0)! - 0xe0000
      if (code >= 0x20 && code < 0x7f) ascii += String.fromCharCode(code)
    }
    if (ascii.length >= 4) found.push(ascii)
  }
  return found
}

// --- Text that reads like no language ---------------------------------------------------------------------------

/** The most frequent English words: ordinary English prose is about a third function words, ciphered text none. */
const FUNCTION_WORDS: ReadonlySet<string> = new Set(
  (
    "the be to of and a in that have i it for not on with he as you do at this but his by from they we say her she " +
    "or an will my one all would there their what so up out if about who get which go me when make can like no " +
    "just him know take into your some could them see other than then now look only come its over think also back " +
    "after use two how our work first well way even new want because any these give day most us is are was were " +
    "tell write how does did has had"
  ).split(" ")
)

const functionWordShare = (text: string): { readonly words: number; readonly share: number } => {
  let words = 0
  let common = 0
  for (const word of text.split(/[^a-z]+/)) {
    if (word.length === 0) continue
    words++
    if (FUNCTION_WORDS.has(word)) common++
  }
  return { words, share: words === 0 ? 0 : common / words }
}

const shift = (text: string, by: number): string =>
  text.replace(/[a-z]/g, (char) => String.fromCharCode(((char.charCodeAt(0) - 97 + by) % 26) + 97))

const MORSE: Readonly<Record<string, string>> = {
  ".-": "a", "-...": "b", "-.-.": "c", "-..": "d", ".": "e", "..-.": "f", "--.": "g", "....": "h", "..": "i",
  ".---": "j", "-.-": "k", ".-..": "l", "--": "m", "-.": "n", "---": "o", ".--.": "p", "--.-": "q", ".-.": "r",
  "...": "s", "-": "t", "..-": "u", "...-": "v", ".--": "w", "-..-": "x", "-.--": "y", "--..": "z",
  "-----": "0", ".----": "1", "..---": "2", "...--": "3", "....-": "4", ".....": "5", "-....": "6", "--...": "7",
  "---..": "8", "----.": "9", ".-.-.-": ".", "--..--": ",", "..--..": "?"
} // prettier-ignore

/** Eight or more Morse letters separated by blanks, with "/" between words. */
const MORSE_RUN = /(?:[.-]{1,7}[ /]{1,3}){7,}[.-]{1,7}/g

const decodeMorse = (run: string): string =>
  run
    .split(/ ?\/ ?| {2,}/)
    .map((word) =>
      word
        .split(" ")
        .map((letter) => MORSE[letter] ?? "")
        .join("")
    )
    .join(" ")

const reverse = (text: string): string => [...text].reverse().join("")

const VOWELS = /[aeiou]/

/** Consonant clusters that can start an English word: the candidates for what Pig Latin moved to the end. */
const ONSETS: ReadonlySet<string> = new Set(
  (
    "b c d f g h j k l m n p q r s t v w x y z bl br ch cl cr dr fl fr gl gr kn pl pr qu sc sh sk sl sm sn sp st sw " +
    "th tr tw wh wr ph sch scr shr sph spl spr squ str thr"
  ).split(" ")
)

/** "erewhay oesday ethay" → "where does the": the onset before "ay" goes back to the front. */
const fromPigLatin = (text: string): string =>
  text.replace(WORD, (word) => {
    if (word.length < 3 || !word.endsWith("ay")) return word
    if (/(?:w|y)ay$/.test(word) && VOWELS.test(word[0]!)) return word.slice(0, -3)
    const stem = word.slice(0, -2)
    for (let length = Math.min(3, stem.length - 1); length >= 1; length--) {
      const onset = stem.slice(-length)
      if (ONSETS.has(onset)) return onset + stem.slice(0, -length)
    }
    return stem
  })

const pigLatinShare = (text: string): number => {
  let words = 0
  let pig = 0
  WORD.lastIndex = 0
  for (let match = WORD.exec(text); match !== null; match = WORD.exec(text)) {
    if (match[0].length < 3) continue
    words++
    if (match[0].endsWith("ay")) pig++
  }
  return words === 0 ? 0 : pig / words
}

const CIPHER_HINT = ledPattern(
  foldedAnchors,
  ["rot", "caesar", "cipher", "shift"],
  "(?:rot ?-?13|caesar|cipher|shift(?:ed)? (?:of |by )?\\d{1,2})\\b"
)

/** For folded text that reads like no language, or that says it is ciphered: the readings that look like English. */
const decipher = (folded: string, anchors: Occurrences): ReadonlyArray<DecodedPayload> => {
  const found: Array<DecodedPayload> = []
  MORSE_RUN.lastIndex = 0
  for (let match = MORSE_RUN.exec(folded); match !== null && found.length < 2; match = MORSE_RUN.exec(folded)) {
    found.push({ encoding: "morse", text: decodeMorse(match[0]) })
  }
  // A sample is enough to tell prose from cipher.
  const sample = folded.slice(0, 512)
  const plain = functionWordShare(sample)
  const hinted = matchesIn(CIPHER_HINT, anchors, folded)
  if (plain.words < 4 || (plain.share >= 0.12 && !hinted)) return found
  if (hinted) {
    // The message says how it is ciphered: ROT13, "a shift of 3" (undone by shifting 23 more), or else the Caesar
    // shift that reads best.
    const named = /\brot ?-?13\b/.test(folded)
      ? 13
      : Number(/\bshift(?:ed)? (?:of |by )?(\d{1,2})\b/.exec(folded)?.[1] ?? 0)
    let best = { by: named > 0 ? (26 - (named % 26)) % 26 || 13 : 0, share: named > 0 ? 1 : 0 }
    for (let by = 1; by < 26 && named === 0; by++) {
      const share = functionWordShare(shift(sample, by)).share
      if (share > best.share) best = { by, share }
    }
    if (best.share > 0) found.push({ encoding: best.by === 13 ? "rot13" : "caesar", text: shift(folded, best.by) })
  } else {
    const rotated = shift(folded, 13)
    const share = functionWordShare(rotated.slice(0, 512)).share
    if (share >= 0.15 && share > plain.share * 2) found.push({ encoding: "rot13", text: rotated })
  }
  const reversed = reverse(folded)
  const reversedShare = functionWordShare(reversed.slice(0, 512)).share
  if (reversedShare >= 0.15 && reversedShare > plain.share * 2) found.push({ encoding: "reversed", text: reversed })
  if (pigLatinShare(sample) >= 0.6) found.push({ encoding: "pig_latin", text: fromPigLatin(folded) })
  return found
}

/** A message that asks for pieces to be put together ("part 1 ... part 2", "combine a, b and c", "a + b"). */
const ASSEMBLY_HINT = ledPattern(
  foldedAnchors,
  ["part", "combine", "concatenat", "join", "merge", "interlac", "interleav", "put together", "assemble"],
  "(?:part ?(?:1|2|one|two)|combine|concatenat|join|merge|interlac|interleav|put together|assemble)"
)
const PLUS_HINT = /\b[a-z] ?\+ ?[a-z]\b/
const QUOTED = /"([^"\n]{1,200})"|'([^'\n]{1,200})'/g

/** Split payloads put back together: the quoted pieces in order, glued and spaced, or interleaved character by character. */
const assemble = (folded: string, anchors: Occurrences): ReadonlyArray<DecodedPayload> => {
  const hinted = matchesIn(ASSEMBLY_HINT, anchors, folded) || (folded.includes("+") && PLUS_HINT.test(folded))
  if (!hinted) return []
  const pieces = [...folded.matchAll(QUOTED)].slice(0, 16).map((match) => match[1] ?? match[2] ?? "")
  if (pieces.length < 2) return []
  const found: Array<DecodedPayload> = [
    { encoding: "split", text: pieces.join("") },
    { encoding: "split", text: pieces.join(" ") }
  ]
  if (/\binterl(?:ace|eave)|\binterleav/.test(folded)) {
    const [first, second] = pieces as [string, string]
    let woven = ""
    for (let index = 0; index < Math.max(first.length, second.length); index++)
      woven += (first[index] ?? "") + (second[index] ?? "")
    found.push({ encoding: "split", text: woven })
  }
  return found
}

/** Whether the global `pattern`, whose every match contains `literal`, matches at least `count` times. */
const atLeast = (text: string, literal: string, pattern: RegExp, count: number): boolean => {
  if (!text.includes(literal)) return false
  let found = 0
  pattern.lastIndex = 0
  while (found < count && pattern.exec(text) !== null) found++
  return found >= count
}

/**
 * The payloads hidden in `text` (original characters, for the byte encodings) and `folded` (its folded form, for the
 * letter ciphers), decoded within `budget`. Decoded base64 and hex are searched once more for a nested layer.
 * `found` is the scan of `folded` by `foldedAnchors`, when the caller has it.
 */
export const decodePayloads = (
  text: string,
  folded: string,
  budget: DecodeBudget = defaultDecodeBudget,
  found?: Occurrences
): ReadonlyArray<DecodedPayload> => {
  const payloads: Array<DecodedPayload> = []
  let chars = 0
  const full = () => payloads.length >= budget.maxPayloads || chars >= budget.maxChars
  const add = (encoding: Encoding, decoded: string | undefined) => {
    if (decoded === undefined || full()) return
    const kept = decoded.slice(0, budget.maxChars - chars)
    chars += kept.length
    payloads.push({ encoding, text: kept })
  }
  const scanRuns = (
    source: string,
    pattern: RegExp,
    encoding: Encoding,
    decode: (run: string) => string | undefined
  ) => {
    pattern.lastIndex = 0
    for (let match = pattern.exec(source); match !== null && !full(); match = pattern.exec(source)) {
      add(encoding, decode(match[0].trim()))
    }
  }
  const scanBytes = (source: string) => {
    for (const run of encodedRuns(source)) {
      scanRuns(run, BINARY_RUN, "binary", decodeBinary)
      scanRuns(run, ESCAPED_HEX_RUN, "hex", decodeHex)
      scanRuns(run, HEX_RUN, "hex", decodeHex)
      scanRuns(run, BASE64_RUN, "base64", decodeBase64)
    }
  }

  for (const ascii of decodeTags(text)) add("unicode_tags", ascii)
  scanBytes(text)
  // One nested layer: base64 of hex, hex of base64...
  const firstLayer = payloads.length
  for (let index = 0; index < firstLayer && !full(); index++) scanBytes(payloads[index]!.text)

  if (!full() && atLeast(text, "%", PERCENT_BYTE, 6)) add("percent", decodePercent(text.slice(0, budget.maxChars)))
  if (!full() && atLeast(text, "&#", HTML_REFERENCE, 6)) {
    add("html_entities", decodeHtmlReferences(text.slice(0, budget.maxChars)))
  }
  if (!full()) {
    const head = folded.slice(0, budget.maxChars)
    const anchors = found !== undefined && head.length === folded.length ? found : foldedAnchors.scan(head)
    for (const payload of decipher(head, anchors)) add(payload.encoding, payload.text)
    if (!full()) for (const payload of assemble(head, anchors)) add(payload.encoding, payload.text)
  }
  return payloads
}
