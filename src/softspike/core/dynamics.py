"""The contract every neuron dynamics obeys, for any set of state variables.

A neuron's state is a fixed set of named tensors: the membrane `v` (always there, owned by the
library) plus whatever the dynamics lists in `state_names` (a synaptic current, an adaptation
variable, the recovery variable u of Izhikevich). One time step, with V = state["v"] = V(t-1):

    H, state = charge(X(t), state, V_rest)        the dynamics: integrate the input
    θ        = threshold(V_th, state)             the dynamics (V_th unless it adapts)
    S        = Θ(H − θ)                           the library: fire (surrogate gradient backward)
    state[v] = reset(H, S, θ)                     the library: hard/soft reset, detach_reset,
                                                  the 2020 straight-through reset gradient
    state    = after_fire(H, S, state)            the dynamics: what spikes do to its own state

`charge` may read every state variable and return new values for its own ones; whatever a dynamics
puts under "v" is replaced by the reset membrane, so the reset modes mean the same for every plugin.
Everything here is a pure function of tensors: the time loop calls it once per step, and no
registry, hook or schema is touched there.

A dynamics whose charge is leaky-linear can *declare* it (`linear_charge`), and the backends with
fused kernels then run it whatever its class; every other dynamics runs on the compiled generic
backend or the reference loop, which need nothing but this contract (the backend catalog,
`softspike.core.backends`, chooses; the kernels live in `softspike.kernels`, which core never imports).
"""

from __future__ import annotations

import abc
import inspect
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import Tensor, nn

State = dict[str, Tensor]

#: The methods whose arithmetic a `linear_charge` declaration vouches for: a subclass that
#: overrides any of them without declaring again loses the inherited declaration.
DECLARED_METHODS = ("charge", "threshold", "after_fire", "initial_state")


@dataclass(frozen=True)
class Adaptation:
    """An adaptive threshold θ = V_th + β·a with a ← ρ·a + S after each step (state name "a")."""

    beta: float
    rho: float


@dataclass(frozen=True)
class LinearCharge:
    """A declaration: "my step is the leaky-linear charge the fused kernels compute".

        H = V + X                                   neither `tau` nor `k_logit` (IF)
        H = V + (X − (V − V_rest)) / τ              `tau` a float (computed as this division)
        H = V + (X − (V − V_rest))·k, k = sigmoid(w) `k_logit` = w, a learnable scalar tensor

    optionally with an `adaptation` of the threshold. The kernels use exactly this arithmetic, so a
    declaring dynamics' own `charge` must compute the same expression for the fused spikes to
    equal its reference loop's bit for bit (the conformance suite checks it).
    """

    tau: float | None = None
    k_logit: Tensor | None = None
    adaptation: Adaptation | None = None

    def __post_init__(self) -> None:
        if self.tau is not None and self.k_logit is not None:
            raise ValueError("LinearCharge: give tau (a fixed time constant) or k_logit (a learnable one), not both")
        if self.tau is not None and not self.tau > 0:
            raise ValueError(f"LinearCharge: tau must be > 0, got {self.tau}")
        if self.k_logit is not None and self.k_logit.numel() != 1:
            raise ValueError(f"LinearCharge: k_logit must be a scalar tensor, got shape {tuple(self.k_logit.shape)}")


class Dynamics(nn.Module, metaclass=abc.ABCMeta):
    """Base of every neuron dynamics (an `nn.Module`, so learnable parameters train with the net).

    Subclasses define `charge`; those with extra state list it in `state_names` and override
    `initial_state`, `threshold` and `after_fire` as needed. A plugin with a schema gives the class
    a nested pydantic `Params` model; the registry validates a spec's parameters against it once and
    hands the validated object to `from_params`.
    """

    #: Names of the state variables kept beside V (V itself is always there, under "v").
    state_names: ClassVar[tuple[str, ...]] = ()
    #: False for a dynamics that only makes sense with a hard reset (its membrane would run away).
    soft_reset_ok: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that changes the step's arithmetic must not inherit a kernel declared for its
        # parent's arithmetic: it gets the generic path until it declares again.
        if "linear_charge" not in cls.__dict__ and any(m in cls.__dict__ for m in DECLARED_METHODS):
            cls.linear_charge = Dynamics.linear_charge  # type: ignore[method-assign]
        _check_charge_signature(cls)
        _adapt_update(cls)

    @classmethod
    def from_params(cls, params: BaseModel) -> Dynamics:
        """Build from an already validated params object (the registry's path: validated once).

        A class with a `configure(params)` method is set up by it without running `__init__` (whose
        keyword arguments would be validated again); any other class gets the fields as keywords.
        """
        if not callable(getattr(cls, "configure", None)):
            return cls(**params.model_dump())
        obj = cls.__new__(cls)
        Dynamics.__init__(obj)
        obj.configure(params)  # type: ignore[operator]
        return obj

    @abc.abstractmethod
    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        """(H, state): the membrane after integrating input `x`, and this step's new state.

        `state["v"]` is V(t-1); V_rest is where the membrane leaks to (the neuron's v_reset, or 0).
        Return the state variables the dynamics updates (others may be passed through unchanged).
        """

    def initial_state(self, like: Tensor, v_rest: float) -> State:
        """The extra state at rest (not V), shaped like one step of input."""
        return {name: torch.zeros_like(like) for name in self.state_names}

    def threshold(self, v_threshold: float, state: State) -> Tensor | float:
        """The firing threshold θ for this step (fixed unless the dynamics adapts it)."""
        return v_threshold

    def after_fire(self, h: Tensor, spike: Tensor, state: State) -> State:
        """The state after this step's spikes; `state["v"]` already holds the reset membrane."""
        return state

    def linear_charge(self) -> LinearCharge | None:
        """Declare a leaky-linear charge to run on the fused kernels; None: the generic path."""
        return None


def _check_charge_signature(cls: type) -> None:
    """Adapt a dynamics written against the 0.x `charge(v, x, state, v_rest) -> H`, with a warning
    that gives the one-line migration (docs/plugins.md, "Migrating from the 0.x contract")."""
    fn = cls.__dict__.get("charge")
    if fn is None:
        return
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return
    if names[:2] != ["self", "v"] or len(names) != 5:
        return
    warnings.warn(
        f"{cls.__qualname__}.charge uses the 0.x signature charge(v, x, state, v_rest) -> H; the contract "
        "is now charge(x, state, v_rest) -> (H, state) with V in state['v']. Migrate with: "
        "def charge(self, x, state, v_rest): v = state['v']; return <H as before>, state",
        DeprecationWarning,
        stacklevel=3,
    )

    def charge(self: Dynamics, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        return fn(self, state["v"], x, state, v_rest), state

    charge.__doc__ = fn.__doc__
    cls.charge = charge  # type: ignore[attr-defined]


def _adapt_update(cls: type) -> None:
    """Run a 0.x `update(state, spike) -> extra state` as `after_fire`, with the migration in a warning."""
    update = cls.__dict__.get("update")
    if update is None or "after_fire" in cls.__dict__:
        return
    warnings.warn(
        f"{cls.__qualname__}.update(state, spike) is the 0.x contract; rename it after_fire(h, spike, state) "
        "and return the whole state ({**state, 'a': ...})",
        DeprecationWarning,
        stacklevel=3,
    )

    def after_fire(self: Dynamics, h: Tensor, spike: Tensor, state: State) -> State:
        extra = {k: t for k, t in state.items() if k != "v"}
        return {**state, **update(self, extra, spike)}

    cls.after_fire = after_fire  # type: ignore[attr-defined]
