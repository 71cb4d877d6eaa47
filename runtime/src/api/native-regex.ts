// The regular expressions of o2c's own validation rules (string.pattern and the predefined rules'
// CEL matches()) run on the platform RegExp instead of the JavaScript RE2 port protovalidate uses by
// default: on every SubmitOrder that port was a large share of the API's CPU. Only a subset of RE2
// whose meaning is the same in both engines is translated; any other pattern is refused at its first
// use, so a new rule with other syntax fails its tests instead of matching differently.

/** RE2's `\s` is ASCII only (Perl class [\t\n\f\r ]); JavaScript's also matches Unicode spaces. */
const RE2_SPACE = '\\t\\n\\f\\r ';

export class UnsupportedPatternError extends Error {}

/**
 * The JavaScript source with the same meaning as RE2 `pattern`, for: literals, `^` and `$` (end of
 * text, as without the m flag), `\xHH`, escaped metacharacters, `\d` and `\s` (ASCII in RE2),
 * bracket classes with ranges and negation, groups `(…)` and `(?:…)`, `|`, and the quantifiers
 * `? * + {n} {n,} {n,m}` (and their lazy forms). `.`, flags, `\p`, `\b`, `\A`, `\z`, POSIX classes
 * and the rest are refused: their meaning differs between the engines or o2c does not use them.
 */
export function re2ToJs(pattern: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charAt(i);
    if (c === '\\') {
      const n = pattern.charAt(i + 1);
      i++;
      if (n === 'x' && /^[0-9A-Fa-f]{2}$/.test(pattern.slice(i + 1, i + 3))) {
        out += `\\x${pattern.slice(i + 1, i + 3)}`;
        i += 2;
      } else if (n === 's') out += inClass ? RE2_SPACE : `[${RE2_SPACE}]`;
      else if (n === 'd') out += '\\d';
      else if (n === '-') out += inClass ? '\\-' : '-';
      else if (n !== '' && '\\.+*?()|[]{}^$/'.includes(n)) out += `\\${n}`;
      else throw new UnsupportedPatternError(`pattern ${JSON.stringify(pattern)}: \\${n} is not supported`);
    } else if (inClass) {
      if (c === '[')
        throw new UnsupportedPatternError(`pattern ${JSON.stringify(pattern)}: nested [ in a class`);
      if (c === ']') inClass = false;
      out += c;
    } else if (c === '[') {
      inClass = true;
      out += c;
      if (pattern.charAt(i + 1) === '^') out += pattern.charAt(++i);
      if (pattern.charAt(i + 1) === ']')
        throw new UnsupportedPatternError(`pattern ${JSON.stringify(pattern)}: ] first in a class`);
    } else if (c === '(') {
      if (pattern.charAt(i + 1) === '?') {
        if (pattern.charAt(i + 2) !== ':')
          throw new UnsupportedPatternError(
            `pattern ${JSON.stringify(pattern)}: only (?: groups are supported`,
          );
        out += '(?:';
        i += 2;
      } else out += c;
    } else if (c === '.') {
      throw new UnsupportedPatternError(
        `pattern ${JSON.stringify(pattern)}: . differs between RE2 and RegExp`,
      );
    } else out += c;
  }
  if (inClass) throw new UnsupportedPatternError(`pattern ${JSON.stringify(pattern)}: unterminated class`);
  return out;
}

const compiled = new Map<string, RegExp>();

/** protovalidate's `regexMatch` hook: RE2 `pattern` found anywhere in `against` (RE2 search semantics). */
export function nativeRegexMatch(pattern: string, against: string): boolean {
  let re = compiled.get(pattern);
  if (!re) {
    re = new RegExp(re2ToJs(pattern), 'u');
    compiled.set(pattern, re);
  }
  return re.test(against);
}
