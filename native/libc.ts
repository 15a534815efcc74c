// libc entry points through koffi, shared by every native binding. Thin: no policy here.
// Buffers passed to these calls are borrowed for the duration of the call only.
import koffi from 'koffi';

const lib = koffi.load('libc.so.6');

export const open = lib.func('int open(const char *path, int flags, int mode)') as (
  path: string, flags: number, mode: number) => number;
export const close = lib.func('int close(int fd)') as (fd: number) => number;
export const read = lib.func('long read(int fd, _Out_ uint8_t *buf, unsigned long count)') as (
  fd: number, buf: Uint8Array, count: number) => number;
export const write = lib.func('long write(int fd, const uint8_t *buf, unsigned long count)') as (
  fd: number, buf: Uint8Array, count: number) => number;
const ioctlRaw = lib.func('int ioctl(int fd, unsigned long request, ...)');
const fcntlRaw = lib.func('int fcntl(int fd, int cmd, ...)');
const strerrorRaw = lib.func('const char *strerror(int errnum)') as (e: number) => string;

/** ioctl with a pointer argument (the struct is read and written in place). */
export function ioctlPtr(fd: number, request: number, arg: Uint8Array): number {
  return ioctlRaw(fd, request, 'uint8_t *', arg) as number;
}

/** ioctl with an integer argument. */
export function ioctlInt(fd: number, request: number, arg: number): number {
  return ioctlRaw(fd, request, 'unsigned long', arg) as number;
}

export function fcntlInt(fd: number, cmd: number, arg: number): number {
  return fcntlRaw(fd, cmd, 'int', arg) as number;
}

export function errno(): number {
  return koffi.errno();
}

export const EAGAIN = 11;
export const EINTR = 4;

export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;

/** An Error carrying the errno of the failed call, e.g. "TUNSETIFF: Operation not permitted (1)". */
export class SysError extends Error {
  readonly errno: number;
  constructor(what: string, code: number = errno()) {
    super(`${what}: ${strerrorRaw(code)} (${code})`);
    this.errno = code;
  }
}

export function setNonBlocking(fd: number): void {
  const fl = fcntlInt(fd, F_GETFL, 0);
  if (fl < 0 || fcntlInt(fd, F_SETFL, fl | O_NONBLOCK) < 0) throw new SysError('fcntl(O_NONBLOCK)');
}

// Raw-pointer variants for the packet path: addresses as plain numbers (from native/memory.ts) cost
// ~55 ns per call instead of ~230 ns for a Buffer argument.
export const readPtr = lib.func('long read(int fd, uintptr_t buf, unsigned long count)') as (
  fd: number, buf: number, count: number) => number;
export const writePtr = lib.func('long write(int fd, uintptr_t buf, unsigned long count)') as (
  fd: number, buf: number, count: number) => number;
export const socket = lib.func('int socket(int domain, int type, int protocol)') as (
  domain: number, type: number, protocol: number) => number;
export const bind = lib.func('int bind(int fd, const uint8_t *addr, uint32_t len)') as (
  fd: number, addr: Uint8Array, len: number) => number;
export const getsockname = lib.func('int getsockname(int fd, _Inout_ uint8_t *addr, _Inout_ uint32_t *len)') as (
  fd: number, addr: Uint8Array, len: Uint32Array) => number;
export const setsockopt = lib.func('int setsockopt(int fd, int level, int name, const uint8_t *val, uint32_t len)') as (
  fd: number, level: number, name: number, val: Uint8Array, len: number) => number;
export const getsockopt = lib.func('int getsockopt(int fd, int level, int name, _Inout_ uint8_t *val, _Inout_ uint32_t *len)') as (
  fd: number, level: number, name: number, val: Uint8Array, len: Uint32Array) => number;
export const sendmsgPtr = lib.func('long sendmsg(int fd, uintptr_t msg, int flags)') as (
  fd: number, msg: number, flags: number) => number;
export const sendmmsgPtr = lib.func('int sendmmsg(int fd, uintptr_t msgvec, unsigned int vlen, int flags)') as (
  fd: number, msgvec: number, vlen: number, flags: number) => number;
export const recvmsgPtr = lib.func('long recvmsg(int fd, uintptr_t msg, int flags)') as (
  fd: number, msg: number, flags: number) => number;

export const EINVAL = 22;
export const EIO = 5;
export const EMSGSIZE = 90;
export const ECONNREFUSED = 111;
export const ENOBUFS = 105;

// CPU affinity of a thread (pid 0: the calling thread); the mask is a bit array, CPU n at bit n.
export const schedSetaffinity = lib.func('int sched_setaffinity(int pid, unsigned long size, const uint8_t *mask)') as (
  pid: number, size: number, mask: Uint8Array) => number;
export const schedGetaffinity = lib.func('int sched_getaffinity(int pid, unsigned long size, _Out_ uint8_t *mask)') as (
  pid: number, size: number, mask: Uint8Array) => number;
/** Gives the CPU to another runnable thread on it, if any (a busy poll must not hold off the ones it waits for). */
export const schedYield = lib.func('int sched_yield(void)') as () => number;
