"""Adapters to where agents are built: each class wraps a ``MemoryAPI`` it is given (the
in-process ``DistributedMemoryManager`` or a ``MemoryClient``), so every adapter works in
process and over HTTP alike. Each module imports its framework, which comes with the
matching extra (``pip install 'memstore[agents]'``, ``[langchain]``, ``[langgraph]``); this
package imports none of them."""
