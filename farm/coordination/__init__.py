"""How farm's processes meet: the Redis URL parsed once and redacted always
(`backend`), who a process is and which tooz groups it joins (`identity`),
membership and leader election through tooz (`membership`, the one module
that imports tooz), and which worker owns which partition (`placement`, a
pure consistent-hash ring, property-tested).

It may import farm's base (errors) and nothing else of farm: every other
package builds on it.
"""
