"""Procedural synthetic driving sequences written in the KITTI raw layout (``python -m data.synthetic``).

A static street (textured road with lane marks and crossings, curbs, tiled sidewalks, building
facades with window grids, parked cars, poles with signs, trees, a far backdrop and sky) is ray cast
analytically (planes, axis-aligned boxes, vertical cylinders) with numba. Every texture is a
function of the 3-D surface point, and shading depends on the surface normal only (Lambertian, no
shadows), so a surface looks the same from every view: warping one frame into another with the
true depth and pose reproduces it, which makes the data usable for self-supervised training and for
exact geometric tests.

What is written (``generate``), ``<date>`` = :data:`DATE`::

    <out>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt          (KITTI format)
    <out>/<date>/<date>_drive_NNNN_sync/
        image_02/data/%010d.png, image_03/data/%010d.png             (RGB, 1242x375)
        image_02/timestamps.txt, image_03/timestamps.txt
        velodyne_points/data/%010d.bin                               (float32 Nx4, velodyne frame)
        velodyne_points/timestamps.txt
        proj_depth/groundtruth/image_02/%010d.png                    (uint16, depth_z*256, 0=invalid)
        poses_image_02.txt                                           (3x4 camera-to-world per frame)
    <out>/splits/{train,val,test}_files.txt                          (Monodepth2 split format)
    <out>/synthetic.json                                             (parameters; written last)

Modules: ``rig`` (cameras, calibration numbers as written, the velodyne), ``scene`` (the street
and the drives), ``textures`` (albedo of every surface point), ``render`` (the ray caster),
``lidar`` (the scan), ``writer`` (the files), ``lenses`` (the test drives through other focal
lengths: ``--lens-factors``), ``command`` (the command line).

World frame: x right, y down (ground plane at y = 0), z along the street. Camera frames follow
:mod:`depth.geometry` (x right, y down, z forward). Camera 02 sits 0.06 m left of camera 0, camera
03 0.48 m right of it (baseline 0.54 m); the velodyne is 0.27 m behind and 0.08 m above camera 0.
"""
from data.synthetic.lidar import simulate_lidar
from data.synthetic.render import cast_rays, render
from data.synthetic.rig import (
    CAM_HEIGHT,
    DATE,
    HEIGHT,
    K_RECT,
    LIDAR_MAX_RANGE,
    T_CAM0_VELO,
    WIDTH,
    cam_offsets,
)
from data.synthetic.scene import Scene, build_scene, drive_seed, drive_trajectory
from data.synthetic.writer import DEFAULTS, drive_name, ensure_synthetic, generate

__all__ = [
    "DATE", "WIDTH", "HEIGHT", "K_RECT", "CAM_HEIGHT", "LIDAR_MAX_RANGE", "Scene", "build_scene", "drive_seed",
    "drive_trajectory", "render", "cast_rays", "simulate_lidar", "generate", "ensure_synthetic", "drive_name",
    "T_CAM0_VELO", "cam_offsets", "DEFAULTS",
]
