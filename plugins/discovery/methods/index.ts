/** The discovery methods and their shared types (see each module for its protocol and outcome rules). */
export * from './types.js';
export { createRdns, type RdnsOptions, type RdnsResolver } from './rdns.js';
export {
  createNetbios,
  type NetbiosOptions,
  type NetbiosName,
  type NbstatReply,
  encodeNetbiosName,
  decodeNetbiosName,
  buildNbstatRequest,
  parseNbstatRequest,
  parseNbstatResponse,
  buildNbstatResponse,
  probeErrorOutcome,
} from './netbios.js';
export { createMdns, type MdnsOptions, stripLocal } from './mdns.js';
export {
  createDhcp,
  type DhcpOptions,
  type DhcpMethod,
  type LeaseFileConfig,
  type LeaseFileStatus,
  type LeaseFormat,
  type LeaseEntry,
  type LeaseMap,
  isLeaseActive,
  parseLeases,
  parseDnsmasqLeases,
  parseIscLeases,
  parseKeaLeases,
  parseOdhcpdLeases,
} from './dhcp.js';
export { createArp, type ArpOptions, type ArpMethod, parseProcArp, parseIpNeigh } from './arp.js';
export { pickName, buildPtrQuery, matchPtrReply } from './dnsutil.js';
export { createProbe, defineMethod, probeOutcome, PROBE_NEGATIVE_ERRORS, type ProbeSpec } from './probe.js';
