"""Value: one output of one node, with a static type. Python operators build ops on it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .types import V1TensorShape

if TYPE_CHECKING:
    from .node import Node
    from .types import TensorType


class Value:
    """A symbolic tensor: the `index`-th output of `node`. Immutable once built (SSA)."""

    __slots__ = ("node", "index", "type", "id", "__weakref__")

    def __init__(self, node: "Node", index: int, type: "TensorType", id: int):
        self.node = node
        self.index = index
        self.type = type
        self.id = id

    # --- static facts -------------------------------------------------------------------
    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    @property
    def graph(self):
        return self.node.graph

    @property
    def op(self):
        return self.node.op

    @property
    def name(self) -> str:
        return f"{self.node.name}:{self.index}"

    def __repr__(self) -> str:
        return f"<Value %{self.id}:{self.type} {self.name}>"

    def get_shape(self):
        """TF1's static shape: a TensorShape whose items are Dimension objects (an unknown dim
        is Dimension(None), whose .value is None); `self.shape` holds the same dims as ints
        (Dimension) and None. Both compare equal to the tuple of ints and None."""
        return tuple.__new__(V1TensorShape, self.type.shape)

    # __eq__/__hash__ stay object identity (fast, C level): Values are dict keys everywhere;
    # the elementwise comparison is rg.equal

    def __bool__(self):
        raise TypeError(f"the truth value of symbolic {self!r} is unknown until the graph runs; "
                        "use rg.where/rg.cond-style ops instead of Python `if`")

    def __len__(self):
        if self.shape and self.shape[0] is not None:
            return self.shape[0]
        raise TypeError(f"len() of {self!r}: its first dimension is unknown until run time")

    def __iter__(self):
        # without this, Python iterates through __getitem__ and never stops on an unknown dim
        for i in range(len(self)):
            yield self[i]

    # --- operators: the op builders are installed from the ops layer (install_operators) ----
    def _math(name, reflected=False):
        def method(self, other):
            fn = _operator(name)
            return fn(other, self) if reflected else fn(self, other)
        method.__name__ = name
        return method

    __add__ = _math("add")
    __radd__ = _math("add", True)
    __sub__ = _math("subtract")
    __rsub__ = _math("subtract", True)
    __mul__ = _math("multiply")
    __rmul__ = _math("multiply", True)
    __truediv__ = _math("divide")
    __rtruediv__ = _math("divide", True)
    __matmul__ = _math("matmul")
    __rmatmul__ = _math("matmul", True)
    __pow__ = _math("pow")
    __lt__ = _math("less")
    __le__ = _math("less_equal")
    __gt__ = _math("greater")
    __ge__ = _math("greater_equal")
    del _math

    def __neg__(self):
        return _operator("negative")(self)

    def __getitem__(self, key):
        return _operator("getitem")(self, key)

    # --- TF1's Variable methods (on a variable's Value; assign refuses any other) -----------
    def assign(self, value, use_locking=None, name=None, read_value=True):
        """`rg.assign(self, value)`: run it to write `value` into this variable."""
        return _operator("assign")(self, value, name=name)

    def assign_add(self, delta, use_locking=None, name=None, read_value=True):
        """`rg.assign(self, self + delta)` (tf.Variable.assign_add)."""
        return _operator("assign")(self, self + delta, name=name or "AssignAdd")

    def assign_sub(self, delta, use_locking=None, name=None, read_value=True):
        """`rg.assign(self, self - delta)` (tf.Variable.assign_sub)."""
        return _operator("assign")(self, self - delta, name=name or "AssignSub")

    def read_value(self):
        """The variable's value (this Value: every read sees the value as of its run)."""
        return self

    def run(self, feed_dict=None, session=None):
        """Run this value for its effect (e.g. `init.run()`, `train_op.run(...)`), TF1-style."""
        self.eval(feed_dict, session)

    def eval(self, feed_dict=None, session=None):
        """Run this value in `session` (or the default session), TF1-style."""
        sess = session or _operator("default_session")()
        return sess.run(self, feed_dict=feed_dict)


# Value's operators build nodes with op builders, and eval() needs the default session: both
# live in higher layers, which install them here when imported (ops/__init__.py, runtime).
_OPERATORS: dict = {}


def install_operators(**builders) -> None:
    """Called by higher layers: name -> callable (add, subtract, ..., getitem,
    default_session)."""
    _OPERATORS.update(builders)


def _operator(name: str):
    try:
        return _OPERATORS[name]
    except KeyError:
        raise RuntimeError(f"Value operator {name!r} is not installed: import rnngraph (the package), "
                           "not rnngraph.ir alone") from None
