import { describe, expect, it } from 'vitest';
import { nativeRegexMatch, re2ToJs, UnsupportedPatternError } from './native-regex.js';

describe('re2ToJs', () => {
  it.each<[string, string, string]>([
    ['a currency code pattern is kept as it is', '^[A-Z]{3}$', '^[A-Z]{3}$'],
    ['an optional group is kept', '^([A-Z]{2})?$', '^([A-Z]{2})?$'],
    ['hex escapes in a class are kept', '[\\x00-\\x1F\\x7F-\\x9F]', '[\\x00-\\x1F\\x7F-\\x9F]'],
    [
      "RE2's ASCII \\s in a negated class becomes its four ASCII spaces and the blank",
      '^[^\\s]+$',
      '^[^\\t\\n\\f\\r ]+$',
    ],
    ["RE2's \\s outside a class becomes a class of them", 'a\\sb', 'a[\\t\\n\\f\\r ]b'],
    ['an escaped hyphen outside a class is a plain hyphen', 'a\\-b', 'a-b'],
    ['a non-capturing group and alternation are kept', '^(?:ab|cd)+$', '^(?:ab|cd)+$'],
  ])('%s', (_sentence, re2, js) => {
    expect(re2ToJs(re2)).toBe(js);
  });

  it.each<[string, string]>([
    ['a dot, which also matches \\r and line separators in RegExp', '^a.b$'],
    ['a Unicode class', '\\pL'],
    ['a word boundary', '\\bword'],
    ['an inline flag', '(?i)abc'],
    ['a POSIX class', '[[:alpha:]]'],
    ['an unterminated class', '[abc'],
  ])('refuses %s', (_sentence, re2) => {
    expect(() => re2ToJs(re2)).toThrow(UnsupportedPatternError);
  });
});

describe('nativeRegexMatch', () => {
  it.each<[string, string, string, boolean]>([
    ['a control character anywhere is found', '[\\x00-\\x1F\\x7F-\\x9F]', 'AC\u0000ME', true],
    ['a C1 control character is found', '[\\x00-\\x1F\\x7F-\\x9F]', 'a\u0085b', true],
    ['plain text has none', '[\\x00-\\x1F\\x7F-\\x9F]', 'ACME Corp. — Zürich', false],
    [
      'a SKU with a no-break space matches ^[^\\s]+$ as in RE2, whose \\s is ASCII only',
      '^[^\\s]+$',
      'W\u00a01',
      true,
    ],
    ['a SKU with a tab does not', '^[^\\s]+$', 'W\t1', false],
    ['$ is the end of the text, not before a final newline', '^[A-Z]{3}$', 'USD\n', false],
  ])('%s', (_sentence, pattern, text, matches) => {
    expect(nativeRegexMatch(pattern, text)).toBe(matches);
  });
});
