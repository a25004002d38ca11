import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { put16, put32, u16, u32, u32le } from '../core/wire/bytes';

describe('wire bytes: unchecked big-endian reads and writes', () => {
  test('agree with Buffer’s checked methods over the whole range', () => {
    const a = Buffer.alloc(8);
    const b = Buffer.alloc(8);
    for (const v of [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xabcd, 0xffff]) {
      a.writeUInt16BE(v, 3);
      put16(b, 3, v);
      assert.deepEqual(b, a);
      assert.equal(u16(b, 3), a.readUInt16BE(3));
    }
    for (const v of [0, 1, 0x7fffffff, 0x80000000, 0xdeadbeef, 0xffffffff]) {
      a.writeUInt32BE(v, 2);
      put32(b, 2, v);
      assert.deepEqual(b, a);
      assert.equal(u32(b, 2), a.readUInt32BE(2));
      assert.equal(u32(b, 2), v);
      a.writeUInt32LE(v, 2);
      assert.equal(u32le(a, 2), a.readUInt32LE(2));
    }
  });
});
