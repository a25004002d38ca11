/** DNS wire constants used by the hot path (RFC 1035, 6891, 8914). */
export const HEADER_LEN = 12;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

export const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED',
  6: 'YXDOMAIN', 7: 'YXRRSET', 8: 'NXRRSET', 9: 'NOTAUTH', 10: 'NOTZONE', 16: 'BADVERS',
};

export const RrType = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, OPT: 41, ANY: 255 } as const;

export const Flag = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;

export const OPCODE_QUERY = 0;
export const CLASS_IN = 1;
/** The DO bit inside the OPT record's TTL field. */
export const EDNS_DO = 0x8000;
/** RFC 8914 Extended DNS Error option code. */
export const OPT_EDE = 15;
export const EDE_STALE_ANSWER = 3;

/** Default EDNS buffer size: the 2020 DNS flag day value, safe against fragmentation. */
export const DEFAULT_EDNS_SIZE = 1232;
export const MAX_NAME_LEN = 255;
export const MAX_LABEL_LEN = 63;
