// The rule for a cluster's display name, one copy for the gateway (which enforces it: a 422 naming the
// option) and the Lab (which checks the form before sending, so the analyst sees the same words sooner).

/** At most this many characters (code points) once trimmed. */
export const MAX_DISPLAY_NAME = 64;

/** What a name may not contain: control, format (bidi overrides, zero-width), private-use, unassigned and
 * surrogate code points, and line or paragraph separators; letters, marks, digits, punctuation, symbols
 * and spaces are printable. */
const NOT_PRINTABLE = /[\p{C}\p{Zl}\p{Zp}]/u;
/** Printable by category yet drawn as nothing: the Hangul fillers and Braille's blank pattern (a name of them looks empty, or like another's). */
const BLANK = /[\u115F\u1160\u3164\uFFA0\u2800]/u;
/** Combining marks a letter may carry in a row: what languages use (Vietnamese stacks two, Tibetan a few);
 * dozens stack above and below the line, over the names of the clusters listed beside it. */
const MAX_MARKS = 4;
const MARKS_PAST_MAX = new RegExp(`\\p{M}{${MAX_MARKS + 1}}`, 'u');

const codePoint = (ch: string): string => `U+${ch.codePointAt(0)!.toString(16).padStart(4, '0').toUpperCase()}`;

/**
 * What is wrong with a display name (already trimmed), as the end of a sentence that starts with the
 * field's name ("is 65 characters long; at most 64"), or null when it may be kept.
 */
export function displayNameProblem(name: string): string | null {
  const length = [...name].length;
  if (length > MAX_DISPLAY_NAME) return `is ${length} characters long; at most ${MAX_DISPLAY_NAME}`;
  const unprintable = NOT_PRINTABLE.exec(name);
  if (unprintable)
    return `contains ${codePoint(unprintable[0])}, which is not a printable character (names are letters, digits, punctuation, symbols and spaces)`;
  const blank = BLANK.exec(name);
  if (blank) return `contains ${codePoint(blank[0])}, which shows as blank space`;
  if (/^\p{M}/u.test(name)) return 'begins with a combining mark (a mark goes on the letter before it)';
  if (MARKS_PAST_MAX.test(name)) return `has more than ${MAX_MARKS} combining marks in a row (they would be drawn over the lines around the name)`;
  return null;
}
