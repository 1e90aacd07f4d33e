"""The IR: Values, Nodes, Graphs (loop bodies are Graphs too), the verifier and the printer."""
from .graph import Graph, get_default_graph, reset_default_graph
from .node import Node
from .printer import format_graph
from .types import TensorType
from .value import Value
from .verify import VerificationError, verify
