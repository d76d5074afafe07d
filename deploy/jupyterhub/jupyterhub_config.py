"""JupyterHub for the workshop: `make hub` (`python -m labkit hub`) starts it with this file and its settings.

One server: JupyterHub with its default proxy (configurable-http-proxy from npm), the shared-password
authenticator (one password for the room, any attendee name), one single-user JupyterLab per attendee running as
that attendee's own Unix user inside a memory and CPU cgroup of their own, on their own copy of the labs, reading
the course's model cache (read-only for them). labkit.workshop.server holds the logic and its reasons; this file
wires it into JupyterHub. Zero to JupyterHub (Kubernetes) takes the same settings from deploy/kubernetes/values.yaml.
"""

import os

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from tornado import web

from labkit.workshop import attendees, server

settings = server.settings_from_environ()
c = get_config()  # noqa: F821  (JupyterHub's config loader provides it)

c.JupyterHub.ip = "0.0.0.0"
c.JupyterHub.port = settings.port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings.internal_ports[0]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.internal_ports[1]}"
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"          # in the hub's state folder (its working directory)
c.JupyterHub.cookie_secret_file = "jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.command = [os.environ["LABKIT_HUB_PROXY"]]
c.ConfigurableHTTPProxy.pid_file = "jupyterhub-proxy.pid"
c.JupyterHub.cleanup_servers = True                           # stopping the hub stops every attendee's server
c.JupyterHub.cleanup_proxy = True

# One password for the room; any name of lower-case letters and digits (it becomes the Unix user phi-<name>).
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = settings.password
c.Authenticator.allow_all = True
c.Authenticator.username_pattern = f"^{attendees.NAME_PATTERN}$"
# The instructor's own login for the Admin page (every attendee's server; stop the idle ones).
c.Authenticator.admin_users = {server.INSTRUCTOR}
c.SharedPasswordAuthenticator.admin_password = settings.admin_password


class CourseSpawner(LocalProcessSpawner):
    """LocalProcessSpawner as the attendee's own Unix user, in their cgroup, on their copy of the labs."""

    def _attendee(self):
        return attendees.attendee(self.user.name)

    async def start(self):
        person = attendees.ensure_attendee(self.user.name, settings.exercises)
        try:
            attendees.check_seat(person.unix, settings.seats, settings.limits)
        except attendees.RoomFull as full:      # an HTTPError's jupyterhub_message is what the attendee reads
            refused = web.HTTPError(503, str(full))
            refused.jupyterhub_message = str(full)
            raise refused from None
        attendees.Cgroup(person.unix).create(settings.limits)
        self.notebook_dir = str(person.labs)
        return await super().start()

    def make_preexec_fn(self, name):
        cgroup, drop_root = attendees.Cgroup(self._attendee().unix), set_user_setuid(self._attendee().unix)

        def preexec():       # in the child, as root: join the cgroup first, then become the attendee
            cgroup.join()
            drop_root()
        return preexec

    def user_env(self, env):
        import pwd

        person = self._attendee()
        entry = pwd.getpwnam(person.unix)
        env.update(USER=person.unix, HOME=entry.pw_dir, SHELL=entry.pw_shell, LABKIT_PROFILE=settings.profile,
                   **person.env(settings.shared_cache))
        return env

    async def stop(self, now=False):
        await super().stop(now=now)
        attendees.Cgroup(self._attendee().unix).remove()


c.JupyterHub.spawner_class = CourseSpawner
c.Spawner.cmd = [str(settings.python), "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.args = [f"--LabApp.app_settings_dir={settings.lab_settings}"]
c.Spawner.http_timeout = 120          # several attendees' first logins at once on a small server
c.Spawner.start_timeout = 120
c.Spawner.mem_limit = settings.limits.memory_bytes      # shown to JupyterLab (MEM_LIMIT); the cgroup enforces it
c.Spawner.cpu_limit = settings.limits.cores
