/**
 * Normalisation before injection scoring: the patterns are written once, for plain lower-case text, and every
 * disguise an attacker can put on a phrase is taken off first.
 *
 * - `fold`: Unicode NFKC (full-width and mathematical letters, ligatures), invisible and bidi-control characters
 *   removed, lower case, Latin diacritics stripped (so "précédentes" meets "precedentes"), look-alike letters from
 *   Cyrillic and Greek mapped to Latin, runs of blanks collapsed (newlines are kept: chat delimiters live at line
 *   starts).
 * - `deobfuscate`: leetspeak inside words ("1gn0r3"), spaced-out letters ("i g n o r e") and words broken by
 *   hyphens ("i-nstruction") undone, when present.
 *
 * Every step is a single pass or a regular expression with one character class per repetition, so the cost is linear
 * in the length of the text.
 */

/**
 * Characters that render as nothing or only steer direction: soft hyphen, combining grapheme joiner, Hangul fillers,
 * Mongolian and variation selectors, zero-width space/joiners, bidi marks, embeddings, overrides and isolates, word
 * joiner and invisible operators, BOM, and the Unicode tag block (decoded separately, see Decode.ts). One character
 * class, so one test per character; the combining ones come first, where no letter precedes them.
 */
const INVISIBLE =
  /[\u034F\u17B4\u17B5\u180B-\u180F\uFE00-\uFE0F\u00AD\u061C\u115F\u1160\u200B-\u200F\u202A-\u202E\u2060-\u206F\u3164\uFEFF\uFFA0]|\uDB40[\uDC00-\uDC7F]/g

/** The invisible characters that have no business in ordinary text (zero-width joiners do: emoji, Indic scripts). */
const SUSPICIOUS_INVISIBLE = /[\u200B\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]|\uDB40[\uDC00-\uDC7F]/g

/** One character class around them (and the tag block's lead surrogate): a quick test for the common case. */
const MAYBE_SUSPICIOUS = /[\u200B-\u2069\uFEFF\uDB40]/

/** How many invisible characters an attacker could use to split a phrase. */
export const countSuspiciousInvisible = (text: string): number => {
  let count = 0
  if (!MAYBE_SUSPICIOUS.test(text)) return count
  SUSPICIOUS_INVISIBLE.lastIndex = 0
  while (SUSPICIOUS_INVISIBLE.exec(text) !== null) count++
  return count
}

/** Combining diacritics of Latin, Greek and Cyrillic letters, and Arabic harakat. */
const DIACRITICS = /[\u0300-\u036F\u064B-\u065F\u0670]/g

/** Letters that NFD does not decompose but readers see as a Latin letter. */
const LATIN_FOLDS: Readonly<Record<string, string>> = {
  // Typographic quotes and apostrophes, so that "don’t" meets "don't".
  "‘": "'",
  "’": "'",
  "‚": "'",
  "‛": "'",
  "“": '"',
  "”": '"',
  "„": '"',
  "«": '"',
  "»": '"',
  ß: "ss",
  ı: "i",
  ł: "l",
  ø: "o",
  đ: "d",
  ð: "d",
  æ: "ae",
  œ: "oe",
  ŀ: "l",
  ħ: "h"
}
const LATIN_FOLD_CHARS = new RegExp(`[${Object.keys(LATIN_FOLDS).join("")}]`, "g")

/**
 * Cyrillic and Greek lower-case letters (and Latin small capitals) that look like a Latin letter. Applied to whole
 * texts that are mostly Latin, and to mixed-script words anywhere, so that Russian or Greek prose stays intact.
 */
const CONFUSABLES: Readonly<Record<string, string>> = {
  // Cyrillic
  а: "a",
  в: "b",
  е: "e",
  ё: "e",
  з: "3",
  к: "k",
  м: "m",
  н: "h",
  о: "o",
  р: "p",
  с: "c",
  т: "t",
  у: "y",
  х: "x",
  ѕ: "s",
  і: "i",
  ї: "i",
  ј: "j",
  һ: "h",
  ԁ: "d",
  ԛ: "q",
  ԝ: "w",
  ӏ: "l",
  ɡ: "g",
  // Greek
  α: "a",
  β: "b",
  γ: "y",
  ε: "e",
  η: "n",
  ι: "i",
  κ: "k",
  ν: "v",
  ο: "o",
  ρ: "p",
  τ: "t",
  υ: "u",
  χ: "x",
  ω: "w",
  // Latin small capitals and other look-alikes NFKC keeps
  ᴀ: "a",
  ʙ: "b",
  ᴄ: "c",
  ᴅ: "d",
  ᴇ: "e",
  ɢ: "g",
  ʜ: "h",
  ɪ: "i",
  ᴊ: "j",
  ᴋ: "k",
  ʟ: "l",
  ᴍ: "m",
  ɴ: "n",
  ᴏ: "o",
  ᴘ: "p",
  ʀ: "r",
  ꜱ: "s",
  ᴛ: "t",
  ᴜ: "u",
  ᴠ: "v",
  ᴡ: "w",
  ʏ: "y",
  ᴢ: "z"
}
const CONFUSABLE_CHARS = new RegExp(`[${Object.keys(CONFUSABLES).join("")}]`, "g")
const HAS_CONFUSABLE = new RegExp(`[${Object.keys(CONFUSABLES).join("")}]`)
/** The blocks the look-alikes come from (IPA, Greek, Cyrillic, phonetic extensions, Latin extended-D): a quick test. */
const MAYBE_CONFUSABLE = /[\u0250-\u052F\u1D00-\u1D2F\uA731]/
/** A word of Latin letters and look-alikes: one that mixes both is a disguise (no real word in any language does). */
const LATINISH_WORD = new RegExp(`[a-z${Object.keys(CONFUSABLES).join("")}]+`, "g")
const HAS_LATIN = /[a-z]/

const mapConfusables = (word: string) => word.replace(CONFUSABLE_CHARS, (char) => CONFUSABLES[char] ?? char)
const mapIfMixed = (word: string) => (HAS_LATIN.test(word) && HAS_CONFUSABLE.test(word) ? mapConfusables(word) : word)

/** True when Latin letters outnumber Cyrillic and Greek ones: look-alikes are then disguise, not language. */
const mostlyLatin = (text: string): boolean => {
  let latin = 0
  let other = 0
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index)
    if (code >= 0x61 && code <= 0x7a) latin++
    else if (code >= 0x370 && code <= 0x52f) other++
  }
  return latin > other
}

const NON_ASCII = /[\u0080-\uFFFF]/

/** The runs of blanks that change: two or more blanks, or a single one other than a space or a newline. */
const BLANKS_TO_COLLAPSE = /\s{2,}|[^\S \n]/g

/**
 * Runs of blanks become one space, and runs holding a line break one newline; single spaces and newlines (most of
 * the blanks) are not even matched.
 */
const collapseBlanks = (text: string) =>
  text.replace(BLANKS_TO_COLLAPSE, (blanks) => (blanks.includes("\n") ? "\n" : " "))

/** Lower-cased, NFKC-normalised text without invisible characters, diacritics or look-alike letters. */
export const fold = (text: string): string => {
  // Plain ASCII has nothing to normalise but case and blanks: the common case, kept cheap.
  if (!NON_ASCII.test(text)) return collapseBlanks(text.toLowerCase())
  let folded = text.normalize("NFKC").replace(INVISIBLE, "").toLowerCase()
  folded = folded.normalize("NFD").replace(DIACRITICS, "").normalize("NFC")
  folded = folded.replace(LATIN_FOLD_CHARS, (char) => LATIN_FOLDS[char] ?? char)
  if (MAYBE_CONFUSABLE.test(folded) && HAS_CONFUSABLE.test(folded)) {
    folded = mostlyLatin(folded) ? mapConfusables(folded) : folded.replace(LATINISH_WORD, mapIfMixed)
  }
  return collapseBlanks(folded)
}

const LEET: Readonly<Record<string, string>> = {
  "0": "o",
  "1": "i",
  "3": "e",
  "4": "a",
  "5": "s",
  "7": "t",
  "8": "b",
  "9": "g",
  "@": "a",
  $: "s",
  "!": "i",
  "|": "l",
  "+": "t"
}

const LEET_CHARS = "0123456789@$!|+"
const isLeetChar = (char: string | undefined) => char !== undefined && LEET_CHARS.includes(char)
const isLeetRunChar = (char: string | undefined) =>
  char !== undefined && ((char >= "a" && char <= "z") || isLeetChar(char))
/** Where a letter touches a leet symbol: the only places worth a closer look. */
const LEET_CONTACT = /[a-z][0-9@$!|+]|[0-9@$!|+][a-z]/g

/**
 * Rewrites the runs of letters and leet symbols that mix both ("1gn0r3" → "ignore"), leaving numbers, "mp3"-like
 * words (one symbol, at most two letters) and "a+b" alone. Each run is visited once.
 */
const unleet = (text: string): string => {
  let output = ""
  let cursor = 0
  LEET_CONTACT.lastIndex = 0
  for (let contact = LEET_CONTACT.exec(text); contact !== null; contact = LEET_CONTACT.exec(text)) {
    let start = contact.index
    while (start > cursor && isLeetRunChar(text[start - 1])) start--
    let end = contact.index + 2
    while (end < text.length && isLeetRunChar(text[end])) end++
    const run = text.slice(start, end)
    let letters = 0
    for (const char of run) if (char >= "a" && char <= "z") letters++
    const symbols = run.length - letters
    if (letters >= 2 && symbols >= 1) {
      output += text.slice(cursor, start) + run.replace(/[0-9@$!|+]/g, (char) => LEET[char] ?? char)
      cursor = end
    }
    LEET_CONTACT.lastIndex = end
  }
  return cursor === 0 ? text : output + text.slice(cursor)
}

const isAsciiLetter = (code: number) => code >= 0x61 && code <= 0x7a
/** " ", ".", "-", "_" or "*". */
const isGap = (code: number) => code === 0x20 || code === 0x2e || code === 0x2d || code === 0x5f || code === 0x2a

/**
 * Joins runs of at least four single letters separated by one blank or punctuation character ("i g n o r e",
 * "i.g.n.o.r.e"). Word breaks inside such a run are lost ("ignoreall"): the patterns allow for that. A single
 * left-to-right pass, copying only around the runs it joins.
 */
export const joinSpacedLetters = (text: string): string => {
  let output = ""
  let copied = 0
  let index = 0
  while (index < text.length) {
    const single =
      isAsciiLetter(text.charCodeAt(index)) &&
      !isAsciiLetter(text.charCodeAt(index - 1)) &&
      !isAsciiLetter(text.charCodeAt(index + 1))
    if (!single) {
      index++
      continue
    }
    let end = index
    let letters = text[index]!
    while (
      isGap(text.charCodeAt(end + 1)) &&
      isAsciiLetter(text.charCodeAt(end + 2)) &&
      !isAsciiLetter(text.charCodeAt(end + 3))
    ) {
      letters += text[end + 2]
      end += 2
    }
    if (letters.length >= 4) {
      output += text.slice(copied, index) + letters
      copied = end + 1
    }
    index = end + 1
  }
  return copied === 0 ? text : output + text.slice(copied)
}

/**
 * Words broken by a hyphen after or before one or two letters ("i-nstruction", "terminatio-n", "ou- tside"); it takes
 * two of them to be a disguise ("e-mail" alone is a word).
 */
const SPLIT_WORDS = /\b([a-z]{1,2})- ?([a-z]{2})|([a-z]{2})- ?([a-z]{1,2})\b/g
/**
 * A leet symbol inside a word: between letters, or two of them around a few letters ("h4ck", "1gn0r3"). Written to
 * start at the symbol (the letter before it is a lookbehind), so that the search skips ahead to symbols.
 */
const LEET_WORD = /[0-9@$!|+](?:(?<=[a-z].)[a-z]|[a-z]{1,3}[0-9@$!|+])/

const SPACED_RUN = /(?:^|[^a-z])[a-z][ .\-_*][a-z][ .\-_*][a-z][ .\-_*][a-z](?![a-z])/

const SPLIT_WORD = new RegExp(SPLIT_WORDS.source, "y")

/**
 * At least two words broken by a hyphen: `SPLIT_WORDS` matches twice. Every match has its hyphen one or two letters
 * after its start, so it is tried only there, hyphen after hyphen: the same matches, in the same order.
 */
const hasSplitWords = (folded: string): boolean => {
  let found = 0
  let from = 0
  for (let hyphen = folded.indexOf("-"); hyphen !== -1 && found < 2; hyphen = folded.indexOf("-", hyphen + 1)) {
    for (let start = Math.max(from, hyphen - 2); start < hyphen; start++) {
      SPLIT_WORD.lastIndex = start
      if (SPLIT_WORD.test(folded)) {
        found++
        from = SPLIT_WORD.lastIndex
        hyphen = from - 1
        break
      }
    }
  }
  return found >= 2
}

/**
 * The folded text with its disguises undone, or `undefined` when it has none (the common case, which then costs two
 * regular-expression tests, and a third when the text has a hyphen).
 */
export const deobfuscate = (folded: string): string | undefined => {
  const hasLeet = LEET_WORD.test(folded)
  const hasSpaced = SPACED_RUN.test(folded)
  const hasSplit = hasSplitWords(folded)
  if (!hasLeet && !hasSpaced && !hasSplit) return undefined
  let text = hasLeet ? unleet(folded) : folded
  if (hasSpaced) text = joinSpacedLetters(text)
  if (hasSplit)
    text = text.replace(
      SPLIT_WORDS,
      (_, a?: string, b?: string, c?: string, d?: string) => (a ?? c ?? "") + (b ?? d ?? "")
    )
  return text === folded ? undefined : text
}
