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
    # NumPy defers to the reflected operators: `np.array(...) * v` and `np.float64(2) * v` call
    # v.__rmul__ and give a Value (TF1's Tensor does the same), not an object array of Values
    __array_priority__ = 100
    __array_ufunc__ = None

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
    __rpow__ = _math("pow", True)
    __floordiv__ = _math("floordiv")
    __rfloordiv__ = _math("floordiv", True)
    __mod__ = _math("floormod")
    __rmod__ = _math("floormod", True)
    __and__ = _math("logical_and")
    __rand__ = _math("logical_and", True)
    __or__ = _math("logical_or")
    __ror__ = _math("logical_or", True)
    __lt__ = _math("less")
    __le__ = _math("less_equal")
    __gt__ = _math("greater")
    __ge__ = _math("greater_equal")
    del _math

    def __neg__(self):
        return _operator("negative")(self)

    def __abs__(self):
        return _operator("abs")(self)

    def __invert__(self):   # TF1: logical_not (bool tensors)
        return _operator("logical_not")(self)

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
        """The variable's value (this Value: every read sees the value as of its run); inside
        rg.control_dependencies, a read made after the dependencies (as rg.identity)."""
        return _operator("read_value")(self)

    def value(self):
        """The variable's value (tf.Variable.value): as read_value()."""
        return self.read_value()

    @property
    def initializer(self):
        """TF1's Variable.initializer: an op that, run, sets this variable to its initial value
        (each access builds one, as rg.variables_initializer([v]))."""
        self._require_variable("initializer")
        return _operator("variable_initializer")(self)

    def initialized_value(self):
        """TF1's Variable.initialized_value(): the initial value as a constant when the
        initializer is deterministic (zeros, ones, an array), else the variable's value."""
        self._require_variable("initialized_value")
        return _operator("initialized_value")(self)

    def _require_variable(self, what):
        if self.node.op.name != "variable":
            raise AttributeError(f"{what} belongs to variables; {self!r} is not one")

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
