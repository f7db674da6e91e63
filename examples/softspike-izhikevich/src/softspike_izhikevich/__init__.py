"""Example third-party softspike plugin: the Izhikevich neuron."""

from softspike_izhikevich.plugin import Izhikevich, IzhikevichParams

__all__ = ["Izhikevich", "IzhikevichParams"]
