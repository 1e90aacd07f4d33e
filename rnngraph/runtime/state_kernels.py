"""Kernels of the ops that touch a Session's state or its device, for every backend: constants
moved to the device once, variable reads and writes through the session's VariableStore."""
from __future__ import annotations

from ..kernels import ANY, register
from ..ops.misc import InitListedVariables, ReadVariable
from ..ops.sources import Assign, Constant, InitVariables, Variable


@register(Constant, ANY)
def constant(op, node, program):
    value = program.ctx.device.asarray(op.value)  # moved to the device once, at compile time
    return lambda: value


@register(Variable, ANY)
def variable(op, node, program):
    store, name = program.ctx.state, node.name
    return lambda: store.read(name)


@register(Assign, ANY)
def assign(op, node, program):
    store, name = program.ctx.state, node.inputs[0].node.name

    def write(_old, new):
        store.write(name, new)
        return new
    return write


@register(InitVariables, ANY)
def init_variables(op, node, program):
    store = program.ctx.state

    def init():
        store.initialize_all()
        return True
    return init


@register(ReadVariable, ANY)
def read_variable(op, node, program):
    """A read made after its dependencies ran (rg.identity(v) under rg.control_dependencies):
    the store's value now, with this run's writes."""
    store, name = program.ctx.state, node.inputs[0].node.name
    return lambda *_: store.read(name)


@register(InitListedVariables, ANY)
def init_listed_variables(op, node, program):
    """rg.variables_initializer: each input is a variable, or its read (under
    rg.control_dependencies), whose variable is set to its seeded initial value."""
    store = program.ctx.state
    names = [v.node.inputs[0].node.name if v.node.op.name == "read_variable" else v.node.name
             for v in node.inputs]

    def init(*_values):
        for name in names:
            store.initialize(name)
        return True
    return init
