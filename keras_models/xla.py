"""One function compiled with XLA on either backend, reading a model's weights at call time.

Keras compiles `Model` calls, but a decode step that threads a key/value cache between calls (and
keeps it on the device) is a plain function over layers. This wraps such a function the way
keras-hub's `CausalLM.make_generate_function` does, chosen once at import:

- TensorFlow: `tf.function(jit_compile=True)`; variables are read when the function runs.
- JAX: `jax.jit` over a stateless function whose first argument is the variables' current
  values, mapped onto the variables in a `StatelessScope` (so new weights after another epoch
  are seen without recompiling, and none are baked into the program as constants).
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras


def _tensorflow(fn: Callable, variables: Sequence, static_argnums: tuple, jit_compile: bool) -> Callable:
    import tensorflow as tf

    # Python ints (the static arguments) retrace by value. Under XLA an argument that an op needs as
    # a constant (a slice start, say) is compiled once per value: index with gathers instead.
    return tf.function(fn, jit_compile=jit_compile)


def _jax(fn: Callable, variables: Sequence, static_argnums: tuple, jit_compile: bool) -> Callable:
    if not jit_compile:
        return fn
    import jax
    from keras.src.backend.common.stateless_scope import StatelessScope

    variables = list(variables)

    def stateless(values, *args):
        with StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    jitted = jax.jit(stateless, static_argnums=tuple(i + 1 for i in static_argnums))
    return lambda *args: jitted([v.value for v in variables], *args)


_COMPILERS = {"tensorflow": _tensorflow, "jax": _jax}
_compile = _COMPILERS.get(keras.config.backend())


def xla_function(fn: Callable, variables: Sequence, *, jit_compile: bool = True,
                 static_argnums: tuple = ()) -> Callable:
    """`fn(*args)` compiled with XLA; with jit_compile off, a TensorFlow graph or eager JAX (as Keras
    runs a model then); as is on a backend with no compiler here. `variables` are every weight fn
    reads; `static_argnums` are Python values that select a compiled variant (e.g. a beam count)."""
    if _compile is None:
        return fn
    return _compile(fn, variables, static_argnums, jit_compile)
