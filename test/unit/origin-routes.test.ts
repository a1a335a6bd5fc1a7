import { describe, expect, it } from 'vitest';
import { compileOrigins, normalizeOriginPattern } from '../../src/core/origin';
import { matchRoute } from '../../src/core/routes';

describe('origin allow-list', () => {
  const allowed = compileOrigins(['https://app.example.com', 'https://*.example.org', 'http://localhost:3000']);
  it.each([
    ['https://app.example.com', true],
    ['https://APP.Example.COM', true],
    ['https://app.example.com:443', true],
    ['https://app.example.com:8443', false],
    ['http://app.example.com', false],
    ['https://a.example.org', true],
    ['https://a.b.c.example.org', true],
    ['https://example.org', false],
    ['https://evilexample.org', false],
    ['https://example.org.evil.com', false],
    ['http://a.example.org', false],
    ['http://localhost:3000', true],
    ['http://localhost', false],
    ['null', false],
    ['', false],
  ])('%s → %s', (origin, ok) => expect(allowed(origin)).toBe(ok));

  it('allows everything with *', () => {
    expect(compileOrigins(['*'])('null')).toBe(true);
  });

  it('normalizes patterns and refuses non-origins', () => {
    expect(normalizeOriginPattern('HTTPS://*.Example.com:443/')).toBe('https://*.example.com');
    for (const bad of ['example.com', 'https://a.com/path', 'https://*.', 'https://a.*.com', 'https://user@a.com']) {
      expect(() => normalizeOriginPattern(bad)).toThrow();
    }
  });
});

describe('routes', () => {
  const r = (url: string, base = '/ws') => {
    const m = matchRoute(base, url);
    return m && { kind: m.kind, auth: m.auth, room: m.room };
  };
  it.each([
    ['/ws', { kind: 'endpoint', auth: false, room: undefined }],
    ['/ws/', { kind: 'endpoint', auth: false, room: undefined }],
    ['/ws?room=x', { kind: 'endpoint', auth: false, room: undefined }],
    ['/ws/lobby', { kind: 'endpoint', auth: false, room: 'lobby' }],
    ['/ws/lobby/', { kind: 'endpoint', auth: false, room: 'lobby' }],
    ['/ws/a%3Ab?token=t', { kind: 'endpoint', auth: false, room: 'a:b' }],
    ['/ws/auth', { kind: 'endpoint', auth: true, room: undefined }],
    ['/ws/auth/', { kind: 'endpoint', auth: true, room: undefined }],
    ['/ws/auth/lobby', { kind: 'endpoint', auth: true, room: 'lobby' }],
    ['/ws/auth/auth', { kind: 'endpoint', auth: true, room: 'auth' }],
    ['/ws/a/b', { kind: 'invalid', auth: false, room: undefined }],
    ['/ws/auth/a/b', { kind: 'invalid', auth: false, room: undefined }],
    ['/ws//', { kind: 'invalid', auth: false, room: undefined }],
    ['/ws/a%2Fb', { kind: 'invalid', auth: false, room: undefined }],
    ['/ws/%zz', { kind: 'invalid', auth: false, room: undefined }],
    ['/ws/..', { kind: 'endpoint', auth: false, room: '..' }], // dots are allowed in room names
    ['/wsx', undefined],
    ['/', undefined],
    ['/other/ws', undefined],
  ])('%s', (url, expected) => expect(r(url)).toEqual(expected));

  it('works with a root base path', () => {
    expect(r('/', '/')).toEqual({ kind: 'endpoint', auth: false, room: undefined });
    expect(r('/lobby', '/')).toEqual({ kind: 'endpoint', auth: false, room: 'lobby' });
    expect(r('/auth/lobby', '/')).toEqual({ kind: 'endpoint', auth: true, room: 'lobby' });
  });
});
