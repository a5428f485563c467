"""TODO suite"""
