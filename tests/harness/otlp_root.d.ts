// Types of the protobufjs-generated OTLP root (used untyped by otlp_receiver.ts).
declare const root: unknown;
export default root;
