"""The jax profiler switch: a trace of steps [start_step, start_step + num_steps) into
DIR/plugins/profile/<time>/ (TensorBoard's profile plugin reads it), and an optional profiler
server for live capture."""

import os

import jax


class StepProfiler:
  """Starts and stops a jax.profiler trace around a window of training steps."""

  def __init__(self, profile_config, default_dir, log=print):
    self.start_step = profile_config.start_step
    self.stop_step = profile_config.start_step + profile_config.num_steps - 1
    self.directory = os.path.abspath(os.path.expanduser(profile_config.dir or default_dir))
    self.active = False
    self.log = log
    if profile_config.server_port:
      jax.profiler.start_server(profile_config.server_port)
      log(f"Profiler server listening on port {profile_config.server_port} (all interfaces).")

  @property
  def enabled(self):
    return self.start_step >= 1

  def before_step(self, step, last_step=None):
    """Called before steps [step, last_step] run (one step unless a call runs several)."""
    if self.enabled and not self.active and step <= self.start_step <= (last_step or step):
      jax.profiler.start_trace(self.directory)
      self.active = True

  def after_step(self, step, outputs):
    if self.active and step >= self.stop_step:
      jax.block_until_ready(outputs)
      self.stop()
      self.log(f"Profile of steps {self.start_step}-{step} written to "
               f"{self.directory}/plugins/profile/.")

  def stop(self):
    if self.active:
      jax.profiler.stop_trace()
      self.active = False
