import { describe, expect, it } from 'vitest';
import { ErrorClass } from '../../gen/o2c/v1/common_pb.js';
import { parseLimitInfo, salesforceFailure } from './errors.js';

describe('salesforceFailure', () => {
  it.each([
    [401, 'INVALID_SESSION_ID', ErrorClass.AUTH, false],
    [403, 'REQUEST_LIMIT_EXCEEDED', ErrorClass.RATE_LIMITED, true],
    [404, 'NOT_FOUND', ErrorClass.NOT_FOUND, false],
    [400, 'REQUIRED_FIELD_MISSING', ErrorClass.VALIDATION, false],
    [400, 'FIELD_CUSTOM_VALIDATION_EXCEPTION', ErrorClass.VALIDATION, false],
    [400, 'UNABLE_TO_LOCK_ROW', ErrorClass.CONFLICT, true],
    [400, 'DUPLICATE_VALUE', ErrorClass.CONFLICT, true],
    [503, 'SERVER_UNAVAILABLE', ErrorClass.UNAVAILABLE, true],
    [500, 'SOMETHING_NEW', ErrorClass.UNAVAILABLE, true],
  ])('HTTP %i %s is %s (retryable: %s)', (status, errorCode, errorClass, retryable) => {
    const f = salesforceFailure('upsert Account', status, [{ message: 'm', errorCode, fields: [] }]);
    expect(f.errorClass).toBe(errorClass);
    expect(f.retryable).toBe(retryable);
    expect(f.code).toBe(errorCode);
  });

  it('reports the failing subrequest of a halted composite, not PROCESSING_HALTED', () => {
    const f = salesforceFailure('composite', 400, [
      { errorCode: 'PROCESSING_HALTED', message: 'rolled back' },
      {
        errorCode: 'REQUIRED_FIELD_MISSING',
        message: 'Required fields are missing: [Name]',
        fields: ['Name'],
      },
    ]);
    expect(f.code).toBe('REQUIRED_FIELD_MISSING');
    expect(f.message).toContain('(fields: Name)');
  });

  it('turns a 300 (external id matched several records) into a validation failure naming them', () => {
    const f = salesforceFailure('upsert Account', 300, [
      '/services/data/v60.0/sobjects/Account/001A',
      '/x/001B',
    ]);
    expect(f.errorClass).toBe(ErrorClass.VALIDATION);
    expect(f.code).toBe('MULTIPLE_CHOICES');
  });
});

describe('parseLimitInfo', () => {
  it('reads api-usage', () => expect(parseLimitInfo('api-usage=18/5000')).toEqual({ used: 18, limit: 5000 }));
  it('ignores an absent header', () => expect(parseLimitInfo(null)).toBeUndefined());
});
