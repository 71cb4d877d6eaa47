// pino JSON logs; secrets are redacted wherever they appear in a logged object.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(name: string, level = process.env.O2C_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: [
        'authorization',
        '*.authorization',
        'headers.authorization',
        '*.headers.authorization',
        'token',
        '*.token',
        'password',
        '*.password',
        'secret',
        '*.secret',
        'clientSecret',
        '*.clientSecret',
      ],
      censor: '[redacted]',
    },
  });
}
